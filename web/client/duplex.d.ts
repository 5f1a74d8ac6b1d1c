// Type declarations for duplex.js, the duplex.v1 hub client (docs/CLIENT-JS.md).
// Checked against the code by `tsc` in tests/types (make test).

/** JSON as published and delivered: whatever JSON.stringify accepts. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Hub error codes (PROTOCOL.md) and the client's own. */
export declare const ErrorCode: Readonly<{
  INTERNAL: 100;
  UNAUTHORIZED: 101;
  UNKNOWN_CHANNEL: 102;
  PERMISSION_DENIED: 103;
  UNKNOWN_COMMAND: 104;
  ALREADY_SUBSCRIBED: 105;
  LIMIT_EXCEEDED: 106;
  BAD_REQUEST: 107;
  NOT_AVAILABLE: 108;
  TOKEN_EXPIRED: 109;
  TOO_MANY_REQUESTS: 110;
  NOT_SUBSCRIBED: 111;
  EPOCH_MISMATCH: 112;
  UNAVAILABLE: 113;
  TIMEOUT: 'timeout';
  DISCONNECTED: 'disconnected';
  NOT_CONNECTED: 'not_connected';
  QUEUE_FULL: 'queue_full';
  BAD_FRAME: 'bad_frame';
  TOKEN_FETCH: 'token_fetch';
}>;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export declare class DuplexError extends Error {
  constructor(code: ErrorCodeValue | number | string, message: string, details?: object);
  readonly name: 'DuplexError';
  /** A hub error code (100..113) or one of the client's own strings. */
  code: ErrorCodeValue | number | string;
  [detail: string]: unknown;
}

export type TransportName = 'websocket' | 'sse' | 'longpoll';
export type ConnectionState = 'disconnected' | 'connecting' | 'connected';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface Network {
  online(): boolean;
  /** Calls back on network changes; returns a function that stops listening. */
  listen(onOnline: () => void, onOffline: () => void): () => void;
}

export interface DuplexOptions {
  token?: string | null;
  getToken?: (() => Promise<string> | string) | null;
  WebSocket?: unknown;
  EventSource?: unknown;
  fetch?: unknown;
  transports?: TransportName[];
  transport?: TransportName | null;
  fallbackTimeout?: number;
  backoffBase?: number;
  backoffCap?: number;
  pingInterval?: number | null;
  pingTimeout?: number;
  connectTimeout?: number;
  commandTimeout?: number;
  maxQueued?: number;
  maxBuffered?: number;
  debug?: boolean | ((...args: unknown[]) => void);
  timers?: Timers | null;
  now?: (() => number) | null;
  random?: (() => number) | null;
  /** `null` ignores the browser's online/offline events. */
  network?: Network | null;
}

export interface Position {
  epoch: string;
  offset: number;
}

export interface ClientInfo {
  client: string;
  user: string;
  info?: Json;
}

export interface Publication {
  channel: string;
  data: Json;
  /** The publisher's connection; absent for publishes made through the HTTP API. */
  info?: ClientInfo;
  offset: number;
  epoch: string;
  /** Delivered by recovery after a reconnect, not live. */
  recovered: boolean;
}

export interface SubscribedContext {
  channel: string;
  epoch: string;
  offset: number;
  recoverable: boolean;
  resubscribed: boolean;
  recovered: boolean;
}

export interface GapContext extends SubscribedContext {
  recovered: false;
  previousEpoch: string | null;
  previousOffset: number | null;
}

export interface PresenceEvent {
  channel: string;
  client: string;
  user: string;
  info?: Json;
}

export interface UnsubscribedContext {
  channel: string;
  code: number;
  reason: string;
  /** true when the hub ended the subscription, false after unsubscribe(). */
  server: boolean;
}

export interface SubscribeOptions {
  onSubscribed?: (ctx: SubscribedContext) => void;
  onMessage?: (publication: Publication) => void;
  onGap?: (ctx: GapContext) => void;
  /** Also fires for your own connection (compare `who.client` with `client.clientId`). */
  onJoin?: (who: PresenceEvent) => void;
  onLeave?: (who: PresenceEvent) => void;
  onUnsubscribed?: (ctx: UnsubscribedContext) => void;
  onError?: (error: DuplexError) => void;
  /** A subscribe token, or a function that fetches one for the channel. */
  token?: string | ((channel: string) => Promise<string> | string);
}

export interface HistoryOptions {
  limit?: number;
  since?: Position;
  reverse?: boolean;
}

export interface HistoryResult {
  epoch: string;
  offset: number;
  publications: Array<{ data: Json; info?: ClientInfo; offset: number }>;
}

export interface PresenceResult {
  clients: ClientInfo[];
}

export interface PublishOptions {
  idempotencyKey?: string;
}

export interface PublishAck {
  epoch: string;
  offset: number;
  duplicate: boolean;
}

export declare class Subscription {
  readonly client: Duplex;
  readonly channel: string;
  /** 'unsubscribed' means ended for good. */
  state: 'subscribing' | 'subscribed' | 'unsubscribed';
  /** The last position seen; recovery starts after it. */
  epoch: string | null;
  offset: number | null;
  recoverable: boolean;
  ready(): Promise<Subscription>;
  unsubscribe(): Promise<void>;
  presence(): Promise<PresenceResult>;
  history(options?: HistoryOptions): Promise<HistoryResult>;
  publish(data: Json, options?: PublishOptions): Promise<PublishAck>;
}

export interface DuplexEvents {
  state: { state: ConnectionState; previous: ConnectionState };
  connecting: { attempt: number };
  connected: { client: string; user: string; node: string; expires: number | null; transport: TransportName };
  disconnected: { code: number; reason: string; reconnect: boolean; wasConnected: boolean };
  reconnecting: { attempt: number; delay: number; offline: boolean };
  message: Publication;
  queued: { channel: string; data: Json; idempotencyKey: string; queued: number };
  refreshed: { expires: number };
  error: DuplexError | Error;
}

export declare class Duplex {
  constructor(url: string, options?: DuplexOptions);
  url: string;
  readonly options: DuplexOptions;
  readonly state: ConnectionState;
  readonly transport: TransportName | null;
  /** While waiting to reconnect: when the next attempt starts (ms since the epoch). */
  readonly reconnectAt: number | null;
  readonly clientId: string | null;
  readonly user: string | null;
  readonly node: string | null;
  readonly expires: number | null;
  /** Publishes waiting for a connection. */
  readonly queued: number;

  on<E extends keyof DuplexEvents>(event: E, fn: (arg: DuplexEvents[E]) => void): () => void;
  off<E extends keyof DuplexEvents>(event: E, fn: (arg: DuplexEvents[E]) => void): void;

  connect(): void;
  disconnect(): void;
  /** Tries at once while a reconnect delay runs; false (and nothing done) otherwise. */
  reconnectNow(): boolean;
  setToken(token: string | null): void;
  clearQueue(reason?: string): void;

  /** Throws DuplexError 105 (ALREADY_SUBSCRIBED) if already subscribed to `channel`. */
  subscribe(channel: string, options?: SubscribeOptions): Subscription;
  getSubscription(channel: string): Subscription | null;
  publish(channel: string, data: Json, options?: PublishOptions): Promise<PublishAck>;
  presence(channel: string): Promise<PresenceResult>;
  history(channel: string, options?: HistoryOptions): Promise<HistoryResult>;
}

export default Duplex;
