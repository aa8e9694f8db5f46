// The browser's pusher-js client, pointed at `tidings serve` instead of
// Pusher's cluster: wsHost/wsPort, no TLS, and this app's auth route.
import Pusher from 'pusher-js';

export interface ClientOptions {
  /** The app key (NEXT_PUBLIC_TIDINGS_KEY). */
  key: string;
  /** Where tidings serve listens (NEXT_PUBLIC_TIDINGS_WS_HOST / _WS_PORT). */
  wsHost: string;
  wsPort: number;
  /** The signed-in user, sent to the auth route in the x-user-id header (see lib/session.ts). */
  userId: string;
  /** The auth route; absolute when not in a browser. */
  authEndpoint?: string;
}

export function createPusherClient(options: ClientOptions): Pusher {
  return new Pusher(options.key, {
    cluster: 'local', // required by the type; wsHost takes precedence
    wsHost: options.wsHost,
    wsPort: options.wsPort,
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: {
      endpoint: options.authEndpoint ?? '/api/pusher/auth',
      transport: 'ajax',
      headers: { 'x-user-id': options.userId },
    },
  });
}
