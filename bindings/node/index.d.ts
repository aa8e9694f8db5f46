// Type declarations for `tidings`, the Node.js bindings of the tidings C ABI.
// Values are the engine's JSON documents (snake_case keys, as pusher-js
// clients receive them). Every method that touches storage or the network
// runs off the JavaScript thread and returns a Promise.

import { EventEmitter } from 'node:events';

/** A user id: a string chosen by the host app (an integer number is taken as its decimal string). */
export type UserId = string | number;
/** A message id (an integer; a bigint or a decimal string is accepted too). */
export type MessageId = number | bigint | string;

/** One delivery transport (`EngineConfig.transports`). */
export type TransportConfig =
  | { kind: 'pusher'; url: string; timeout_ms?: number; attempts?: number }
  | { kind: 'broker' }
  | { kind: 'polling'; capacity?: number };

/** A plugin (`EngineConfig.plugins`), in the order their hooks run. */
export interface PluginConfig {
  /** The shared library to load. */
  path?: string;
  /** A compiled-in plugin, or the name logs and rejections show. */
  name?: string;
  /** Handed to the plugin's `init`. */
  config?: unknown;
  /** Go on without the plugin when it fails to load. */
  optional?: boolean;
}

/** The engine configuration (`EngineConfig` in the core crate); every field optional, unknown fields refused. */
export interface EngineConfig {
  /** `memory:`, `sqlite://PATH` or `postgres://...` (default `sqlite://./tidings-data/tidings.db`). */
  store?: string;
  /** How many events a subscriber may fall behind before it gets a `lagged` event. */
  event_capacity?: number;
  plugins?: PluginConfig[];
  /** Where events go besides in-process subscribers, such as `{kind: 'pusher', url: 'http://KEY:SECRET@HOST:PORT/apps/ID'}`. */
  transports?: TransportConfig[];
}

/** One app of a server. */
export interface AppConfig {
  id: string;
  key: string;
  /** At least 32 bytes (`Server.start` and `tidings serve` refuse shorter ones). */
  secret: string;
  webhooks?: string[];
  webhook_batching?: boolean;
  [option: string]: unknown;
}

/** The configuration of `Server.start`; every field optional. */
export interface ServerConfig {
  /** Default `127.0.0.1:6001`; `127.0.0.1:0` picks a free port. */
  listen?: string;
  /** Default `./tidings-data`. */
  data_dir?: string;
  store?: string;
  /** Without apps, the default app (id 1, key `tidings-key`) gets a secret kept in `data_dir`. */
  apps?: AppConfig[];
  /** Sign-in by user id without a token: anyone can act as any user (logged as a warning). */
  demo?: boolean;
  /** Browser origins (`https://app.example`) whose pages may call the chat API; default: the server's own only. */
  allowed_origins?: string[];
  transports?: TransportConfig[];
  plugins?: PluginConfig[];
}

export interface Reaction {
  user_id: string;
  emoji: string;
}

export interface Message {
  id: number;
  conversation_id: string;
  /** 1, 2, 3... per conversation. */
  seq: number;
  sender_id: string;
  body: string;
  client_msg_id: string | null;
  /** Unix milliseconds. */
  created_at: number;
  edited_at: number | null;
  deleted_at: number | null;
  reactions: Reaction[];
}

/** A send request: `to` or `conversation_id` names the conversation. */
export interface SendRequest {
  from: UserId;
  to?: UserId;
  conversation_id?: string;
  /** Alias of `conversation_id`. */
  conversationId?: string;
  body: string;
  /** Idempotency key: a retry with the same key returns the first message. */
  client_msg_id?: string;
  /** Alias of `client_msg_id`. */
  clientMsgId?: string;
}

export interface Sent {
  message: Message;
  /** False for a retry with a known `client_msg_id`. */
  created: boolean;
}

export interface Page {
  /** Newest first. */
  items: Message[];
  /** The `before` of the next (older) page, or null at the start. */
  next_before: number | null;
}

export interface ReadState {
  conversation_id: string;
  user_id: string;
  seq: number;
}

export interface Unread {
  read_state: ReadState;
  unread_count: number;
}

export interface InboxEntry {
  conversation_id: string;
  peer_id: string;
  last_message: Message;
  unread_count: number;
  last_read_seq: number;
}

/** An event as transports deliver it: `new-message`, `messages-read`, `typing`, `message-edited`, `message-deleted`, `reaction`, or `lagged` (`data.dropped` events were dropped; catch up with `messagesAfter`). */
export interface EngineEvent<T = any> {
  event: string;
  /** `private-conversation-{lo}-{hi}`, or null for `lagged`. */
  channel: string | null;
  data: T;
}

/** Status numbers of the C ABI by name. */
export declare const Status: Readonly<{
  OK: 0;
  TIMEOUT: 1;
  CLOSED: 2;
  NULL_ARGUMENT: 100;
  INVALID_UTF8: 101;
  INVALID_JSON: 102;
  REENTRANT: 103;
  PANIC: 104;
  INVALID_ARGUMENT: 105;
  NOT_FOUND: 106;
  FORBIDDEN: 107;
  CONFLICT: 108;
  STORAGE: 109;
  TRANSPORT: 110;
  CONFIG: 111;
  SHUT_DOWN: 112;
  UNAUTHORIZED: 113;
  UNKNOWN: 199;
}>;

export type ErrorCode =
  | 'TIDINGS_NULL_ARGUMENT'
  | 'TIDINGS_INVALID_UTF8'
  | 'TIDINGS_INVALID_JSON'
  | 'TIDINGS_REENTRANT'
  | 'TIDINGS_PANIC'
  | 'TIDINGS_INVALID_ARGUMENT'
  | 'TIDINGS_NOT_FOUND'
  | 'TIDINGS_FORBIDDEN'
  | 'TIDINGS_CONFLICT'
  | 'TIDINGS_STORAGE'
  | 'TIDINGS_TRANSPORT'
  | 'TIDINGS_CONFIG'
  | 'TIDINGS_SHUT_DOWN'
  | 'TIDINGS_UNAUTHORIZED'
  | 'TIDINGS_UNKNOWN';

/** Every error tidings reports: a stable `code` and the engine's message. */
export declare class TidingsError extends Error {
  constructor(message: string, code: string, status: number);
  readonly name: 'TidingsError';
  /** `TIDINGS_` and the status name: `TIDINGS_INVALID_ARGUMENT`, `TIDINGS_NOT_FOUND`... */
  readonly code: ErrorCode;
  /** The C ABI status number (105, 106...). */
  readonly status: number;
}

/** An engine: a store, the outbox worker and the transports. */
export declare class Engine {
  private constructor();
  /** Opens an engine from an `EngineConfig` (object or JSON string). */
  static open(config?: EngineConfig | string): Promise<Engine>;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /** Stores a message and resolves once it is durable; its `new-message` event follows. */
  send(request: SendRequest | string): Promise<Sent>;
  /** A page of history, newest first: `limit` (1-100, default 50) messages with a seq below `before` (0: the newest). */
  history(conversationId: string, options?: { before?: number | bigint; limit?: number }): Promise<Page>;
  /** Messages with a seq above `after`, oldest first, at most `max` (1-1000, default 100). */
  messagesAfter(conversationId: string, after?: number | bigint, options?: { max?: number }): Promise<Message[]>;
  /** One message by id; TIDINGS_NOT_FOUND when there is none. */
  message(messageId: MessageId): Promise<Message>;
  /** Marks the conversation read up to `upTo` (never moves back); emits `messages-read` when it moved. */
  markRead(userId: UserId, conversationId: string, upTo: number | bigint): Promise<ReadState>;
  unread(userId: UserId, conversationId: string): Promise<Unread>;
  /** The user's conversations, newest activity first (default limit 50). */
  inbox(userId: UserId, options?: { limit?: number }): Promise<InboxEntry[]>;
  /** Messages in the user's conversations containing every word of `query` (default max 50). */
  search(userId: UserId, query: string, options?: { max?: number }): Promise<Message[]>;
  /** Emits `typing` (never stored). */
  typing(userId: UserId, conversationId: string): Promise<void>;
  /** Replaces the body; only the sender may. */
  edit(userId: UserId, messageId: MessageId, body: string): Promise<Message>;
  /** Soft-deletes; only the sender may. */
  delete(userId: UserId, messageId: MessageId): Promise<Message>;
  /** Sets the user's one reaction. */
  react(userId: UserId, messageId: MessageId, emoji: string): Promise<Message>;
  unreact(userId: UserId, messageId: MessageId): Promise<Message>;
  /** Shuts the engine down: calls then fail with TIDINGS_SHUT_DOWN and streams end. `close()` still frees it. */
  shutdown(): Promise<void>;
  /** Subscribes to every event from now on. */
  events(options?: { capacity?: number }): Subscription;
  /** Closes its subscriptions, waits for calls in flight, frees the engine (an opened one is shut down first). Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A stream of engine events, fed by one pump thread. It does not keep the
 * process alive unless `ref()` is called; `close()` ends it.
 */
export declare class Subscription extends EventEmitter implements AsyncIterable<EngineEvent> {
  private constructor();
  /** Whether the stream ended (closed, or its engine shut down). */
  readonly closed: boolean;
  /** Stops the stream; resolves once its thread is joined and the stream freed. */
  close(): Promise<void>;
  ref(): this;
  unref(): this;
  on(event: 'event', listener: (event: EngineEvent) => void): this;
  on(event: 'end', listener: (error: TidingsError | null) => void): this;
  on(event: 'error', listener: (error: TidingsError) => void): this;
  once(event: 'event', listener: (event: EngineEvent) => void): this;
  once(event: 'end', listener: (error: TidingsError | null) => void): this;
  once(event: 'error', listener: (error: TidingsError) => void): this;
  /** Iterates until the stream ends; at most `capacity` unread events wait, then one `lagged` says how many were dropped. Breaking out closes the stream. */
  [Symbol.asyncIterator](): AsyncIterator<EngineEvent>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface ServerInfo {
  address: string;
  running: boolean;
  app: { id: string; key: string; secret: string };
}

/** `tidings serve` in this process. A running server keeps the process alive (see `unref()`). */
export declare class Server {
  private constructor();
  static start(config?: ServerConfig | string): Promise<Server>;
  /** Such as `127.0.0.1:43615`. */
  readonly address: string;
  readonly port: number;
  info(): ServerInfo;
  /** A handle to the server's engine: sends reach its WebSocket clients. Closing it leaves the server running. */
  engine(): Engine;
  /** Stops gracefully: WebSockets closed with 4200, pending events delivered, the engine shut down. Idempotent. */
  stop(): Promise<void>;
  /** Closes the engines it gave out, stops and frees the server. Idempotent. */
  close(): Promise<void>;
  ref(): this;
  unref(): this;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The `auth` value (`"key:hex"`) of a private channel subscription; answer pusher-js with `{auth}`. */
export declare function channelAuth(appKey: string, appSecret: string, socketId: string, channel: string): string;
/** Signs a presence subscription; answer pusher-js with the result as is. */
export declare function presenceAuth(
  appKey: string,
  appSecret: string,
  socketId: string,
  channel: string,
  channelData: { user_id: string; user_info?: unknown } | string,
): { auth: string; channel_data: string };
/** Signs a `pusher:signin`; answer pusher-js with the result as is. */
export declare function userAuth(
  appKey: string,
  appSecret: string,
  socketId: string,
  userData: { id: string; [field: string]: unknown } | string,
): { auth: string; user_data: string };
/** The conversation id of two users (`"1-18"`), the same in either order. */
export declare function conversationId(a: UserId, b: UserId): string;
/** The conversation of `private-conversation-{a}-{b}` / `presence-conversation-{a}-{b}`; any other channel throws TIDINGS_INVALID_ARGUMENT. */
export declare function conversationOfChannel(channel: string): {
  conversation_id: string;
  members: [string, string];
  presence: boolean;
};
/** A user token for `tidings serve` (ttl 0: one day; at most 366 days). */
export declare function tokenMint(appSecret: string, userId: UserId, ttlSeconds?: number): string;
/** The claims of a valid token; a malformed, forged or expired one throws TIDINGS_UNAUTHORIZED. */
export declare function tokenVerify(appSecret: string, token: string): { user: string; exp: number };

export type LogLevel = 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
/** Sends tidings' log lines up to `level` (default `info`) to `sink`; `null` stops them. Process-wide. */
export declare function setLogger(
  sink: ((level: LogLevel, target: string, message: string) => void) | null,
  level?: LogLevel | number,
): void;

/** The C ABI major version these bindings speak. */
export declare const ABI_VERSION_MAJOR: number;
/** The loaded library's C ABI version, `(major << 16) | minor`. */
export declare function abiVersion(): number;
/** The loaded library's version, such as `"0.1.0"`. */
export declare function version(): string;
