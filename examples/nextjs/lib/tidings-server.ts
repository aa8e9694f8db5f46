// Replaces lib/pusher-server.ts: instead of a Pusher SDK client that only
// triggers events, one tidings engine that stores every message and hands
// its `new-message` event to a Pusher-compatible server (`tidings serve`, or
// Pusher itself) through the engine's pusher transport.
//
// One engine per process, kept on globalThis: Next.js re-evaluates modules
// on every hot reload in development, and each evaluation would otherwise
// open another engine on the same store.
import { Engine, type EngineConfig } from 'tidings';

/** The Pusher app the engine delivers to and the auth route signs for. */
export interface TidingsApp {
  id: string;
  key: string;
  secret: string;
  /** Where `tidings serve` (or another Pusher-compatible server) listens. */
  host: string;
  port: number;
  scheme: 'http' | 'https';
}

/**
 * The app from the environment:
 *   TIDINGS_APP_ID (default 1), TIDINGS_APP_KEY (default tidings-key),
 *   TIDINGS_APP_SECRET (required), TIDINGS_HOST (default 127.0.0.1),
 *   TIDINGS_PORT (default 6001), TIDINGS_SCHEME (http or https, default http).
 */
export function tidingsApp(env: NodeJS.ProcessEnv = process.env): TidingsApp {
  const secret = env.TIDINGS_APP_SECRET;
  if (!secret) {
    throw new Error('TIDINGS_APP_SECRET is not set (the app secret of tidings serve, see README.md)');
  }
  const scheme = env.TIDINGS_SCHEME === 'https' ? 'https' : 'http';
  return {
    id: env.TIDINGS_APP_ID || '1',
    key: env.TIDINGS_APP_KEY || 'tidings-key',
    secret,
    host: env.TIDINGS_HOST || '127.0.0.1',
    port: Number(env.TIDINGS_PORT || (scheme === 'https' ? 443 : 6001)),
    scheme,
  };
}

/**
 * The engine configuration: the store (TIDINGS_STORE, default an SQLite
 * file under ./tidings-data) and one pusher transport to the app.
 */
export function engineConfig(env: NodeJS.ProcessEnv = process.env): EngineConfig {
  const app = tidingsApp(env);
  return {
    store: env.TIDINGS_STORE || 'sqlite://./tidings-data/app.db',
    transports: [
      {
        kind: 'pusher',
        url: `${app.scheme}://${app.key}:${app.secret}@${app.host}:${app.port}/apps/${app.id}`,
      },
    ],
  };
}

const globalForTidings = globalThis as typeof globalThis & {
  tidingsEngine?: Promise<Engine>;
};

/** The process's engine, opened on first use. */
export function getEngine(): Promise<Engine> {
  let engine = globalForTidings.tidingsEngine;
  if (!engine) {
    engine = Engine.open(engineConfig());
    const opening = engine;
    // A failed open is not kept: the next request tries again.
    opening.catch(() => {
      if (globalForTidings.tidingsEngine === opening) globalForTidings.tidingsEngine = undefined;
    });
    globalForTidings.tidingsEngine = engine;
  }
  return engine;
}

/** Closes the process's engine (tests, graceful shutdown); the next getEngine() opens a new one. */
export async function closeEngine(): Promise<void> {
  const engine = globalForTidings.tidingsEngine;
  globalForTidings.tidingsEngine = undefined;
  if (engine) await (await engine).close();
}
