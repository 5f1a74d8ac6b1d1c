// Every call docs/CLIENT-JS.md shows, written against web/client/duplex.d.ts; tsc
// (strict) must accept it. The @ts-expect-error lines must stay errors: they
// prove the declarations are not `any`.
import Duplex, { Duplex as Named, DuplexError, ErrorCode } from '../../web/client/duplex.js';
import type { Publication, PublishAck, Subscription } from '../../web/client/duplex.js';

const client: Duplex = new Named('ws://127.0.0.1:8080/connection/websocket', {
  token: 'eyJ...',
  getToken: async () => 'eyJ...',
  backoffBase: 500,
  backoffCap: 20_000,
  transports: ['websocket', 'sse', 'longpoll'],
  debug: (...args: unknown[]) => console.debug(args),
});

const sub: Subscription = client.subscribe('chat:lobby', {
  onSubscribed: (ctx) => { const r: boolean = ctx.recovered; void r; },
  onMessage: (m: Publication) => { const who: string | undefined = m.info?.user; void who; void m.data; },
  onGap: (ctx) => { const previous: number | null = ctx.previousOffset; void previous; },
  onJoin: (who) => { if (who.client === client.clientId) return; },
  onLeave: (who) => void who.user,
  onUnsubscribed: (ctx) => void ctx.server,
  onError: (err) => void err.code,
});

async function run(): Promise<void> {
  client.connect();
  await sub.ready();
  const ack: PublishAck = await client.publish('chat:lobby', { text: 'hi', name: 'ada', time: Date.now() });
  const again = await sub.publish('plain words', { idempotencyKey: 'k-1' });
  const duplicate: boolean = again.duplicate;
  const { clients } = await client.presence('chat:lobby');
  const { publications } = await client.history('chat:lobby', { limit: 50, since: { epoch: 'e', offset: ack.offset } });
  const first = publications[0]?.data;
  const stop = client.on('reconnecting', ({ delay, offline }) => void [delay, offline]);
  client.on('state', ({ state }) => { const s: 'disconnected' | 'connecting' | 'connected' = state; void s; });
  stop();
  const tried: boolean = client.reconnectNow();
  const waiting: number | null = client.reconnectAt;
  try {
    client.subscribe('chat:lobby');
  } catch (err) {
    if (err instanceof DuplexError && err.code === ErrorCode.ALREADY_SUBSCRIBED) void client.getSubscription('chat:lobby');
  }
  await sub.unsubscribe();
  client.disconnect();
  void [duplicate, clients.length, first, tried, waiting, client.queued];
}
void run;

// @ts-expect-error: a channel is a string
client.subscribe(42);
// @ts-expect-error: no such event
client.on('connceted', () => {});
// @ts-expect-error: functions are not JSON
void client.publish('chat:lobby', () => 1);
// @ts-expect-error: unknown option
new Duplex('ws://x', { backofBase: 1 });
// @ts-expect-error: reconnectNow returns a boolean, not a promise
void client.reconnectNow().then;
