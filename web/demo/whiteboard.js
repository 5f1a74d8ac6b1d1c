// The whiteboard demo: a shared board with live cursors, on web/client/duplex.js.
//
// - Strokes are client publishes on `board:NAME` (history: the board's log).
//   A stroke in progress goes out in chunks, at most one publish per
//   SEND_INTERVAL_MS for the whole page (points coalesced in between), so a
//   page stays under the hub's per-connection publish rate (limits.publish_rate,
//   50/s by default; namespaces have no rate of their own).
// - Cursors are publishes on `cursors:NAME` (no history, presence with
//   join/leave): a cursor shows the user's name in a colour derived from it,
//   and disappears when its connection leaves.
// - A late joiner replays the board from history up to the offset of its
//   subscribe reply, holding the live messages above it meanwhile: no chunk
//   twice, none missing. Everything is applied in offset order, so every page
//   builds the same board, "clear board" included.
// - Coordinates are integers in 1/PRECISION of the (square) board's side, so
//   the canvas can take any size and redraws without losing anything.
// User data only reaches the page through textContent and the canvas.
import { Duplex } from './duplex.js';

const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;
const BOARD_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const COLOR_PATTERN = /^#[0-9a-f]{6}$/;
const PRECISION = 10000;          // board coordinates: 0..PRECISION on both axes
const SEND_INTERVAL_MS = 34;      // at most one publish per 34 ms per page: < 30 per second
const MAX_POINTS_PER_CHUNK = 120; // a chunk stays well under limits.max_data_bytes
const MAX_CHUNKS = 10000;         // chunk index bound accepted from others
const HISTORY_PAGE = 250;         // publications per history request while replaying
const WIDTHS = [
  { name: 'thin', value: 30 },
  { name: 'medium', value: 70 },
  { name: 'thick', value: 160 },
];
const PALETTE = ['#1d2330', '#c0392b', '#3461d6', '#1f9d55', '#c77700', '#8e44ad'];

const $ = (id) => document.getElementById(id);

// --- colours ------------------------------------------------------------------

// A colour of its own for every name (FNV-1a hash -> hue), dark enough for
// white text on it (relative luminance at most 0.2: contrast 4.2:1 or more).
export function colorOf(name) {
  let h = 2166136261;
  for (const ch of String(name)) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 16777619);
  }
  const hue = (h >>> 0) % 360;
  let lightness = 0.42;
  let hex = hslToHex(hue, 0.7, lightness);
  while (luminance(hex) > 0.2 && lightness > 0.2) {
    lightness -= 0.02;
    hex = hslToHex(hue, 0.7, lightness);
  }
  return hex;
}

function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function hslToHex(hue, s, l) {
  const a = s * Math.min(l, 1 - l);
  const channel = (n) => {
    const k = (n + hue / 30) % 12;
    const v = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(v * 255).toString(16).padStart(2, '0');
  };
  return `#${channel(0)}${channel(8)}${channel(4)}`;
}

function nameOf(who) {
  if (who && who.info && typeof who.info.name === 'string') return who.info.name;
  return (who && who.user) || 'anonymous';
}

// --- state --------------------------------------------------------------------

const page = {
  client: null,
  name: '',
  boardName: 'main',
  boardSub: null,
  cursorSub: null,
  connected: false,
};

// The board as built from the channel, in offset order. Every page that
// applied the same offsets holds the same board.
const board = {
  offset: 0,              // last applied offset
  strokes: new Map(),     // id -> stroke, in the order of their first chunk
  cleared: new Set(),     // strokes cut by a clear while still open: their later chunks are dropped
  ready: false,           // replayed from history, now live
  replaying: false,
  replayToken: 0,
  needsReplay: false,
  held: [],               // live messages that arrived while replaying
  stats: { applied: 0, replayed: 0, held: 0, duplicates: 0, clears: 0, missing: 0 },
};

// What this page draws and sends.
const local = {
  prefix: randomHex(6),
  seq: 0,
  color: PALETTE[0],
  width: WIDTHS[1].value,
  drawing: null,          // the stroke under the pointer
  pointerId: null,
  queue: [],              // strokes and clears to send, in order (the first is being sent)
  overlay: [],            // own strokes not yet entirely back from the hub: drawn on the live layer
  retry: [],              // publishes the hub refused for now (rate, storage): sent again first
  cursor: undefined,      // {x, y} to publish, null to hide, undefined: nothing new
  lastSendAt: -Infinity,
  timer: null,
  published: [],          // [time, channel] of the last publishes (tests check the rate)
};

const cursors = new Map();  // client id -> {client, user, name, x, y, hidden, el}
const people = new Map();   // client id -> {client, user, info}

function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// --- applying the channel ---------------------------------------------------------

function resetBoard() {
  board.offset = 0;
  board.strokes.clear();
  board.cleared.clear();
  scheduleInk(true);
}

// One publication of board:NAME, in offset order; `live` when it did not come from history.
function apply(pub, live) {
  if (typeof pub.offset === 'number') {
    if (pub.offset <= board.offset) {
      board.stats.duplicates++;
      return;
    }
    if (!live && pub.offset > board.offset + 1) board.stats.missing += pub.offset - board.offset - 1;
    board.offset = pub.offset;
  }
  board.stats.applied++;
  const d = pub.data;
  if (!d || typeof d !== 'object') return;
  if (d.t === 'clear') applyClear();
  else if (d.t === 's') applyChunk(pub, d, live);
}

function applyClear() {
  for (const s of board.strokes.values()) if (!s.ended) board.cleared.add(s.id);
  board.strokes.clear();
  board.stats.clears++;
  // Own strokes already on the board went with it; one whose first chunk is
  // still on its way lands after the clear (offsets arrive in order) and stays.
  for (const s of [...local.overlay]) if (s.onBoard) cancelLocal(s);
  scheduleInk(true);
  scheduleLive();
}

function validPoints(p) {
  if (!Array.isArray(p) || p.length % 2 !== 0 || p.length > 2 * MAX_POINTS_PER_CHUNK) return null;
  for (const v of p) if (!Number.isInteger(v) || v < 0 || v > PRECISION) return null;
  return p;
}

function applyChunk(pub, d, live) {
  const points = validPoints(d.p);
  if (typeof d.id !== 'string' || d.id.length > 64 || !Number.isInteger(d.i) || d.i < 0 || d.i >= MAX_CHUNKS || !points) return;
  if (board.cleared.has(d.id)) return;
  let s = board.strokes.get(d.id);
  const who = pub.info || {};
  if (!s) {
    s = {
      id: d.id, user: who.user || '', client: who.client || '', name: nameOf(who),
      color: PALETTE[0], width: WIDTHS[1].value,
      points: [], next: 0, waiting: new Map(), end: null, ended: false,
    };
    board.strokes.set(d.id, s);
  }
  if (d.i < s.next || s.waiting.has(d.i)) return;  // a chunk twice: offsets make this impossible
  const from = s.points.length;
  if (d.i === 0) {
    if (typeof d.c === 'string' && COLOR_PATTERN.test(d.c)) s.color = d.c;
    if (Number.isInteger(d.w) && d.w > 0 && d.w <= 1000) s.width = d.w;
  }
  if (d.e) s.end = d.i;
  // Chunks join in index order (a publish resent after a reconnect may land after a later one).
  s.waiting.set(d.i, points);
  while (s.waiting.has(s.next)) {
    for (const v of s.waiting.get(s.next)) s.points.push(v);
    s.waiting.delete(s.next);
    s.next++;
  }
  if (s.end != null && s.next > s.end) s.ended = true;
  if (d.i === 0 && from > 0) scheduleInk(true);  // its colour came late
  else if (board.ready) drawIncrement(s, from);

  const mine = local.overlay.find((o) => o.id === s.id);
  if (mine) {
    mine.onBoard = true;
    if (s.ended) {
      local.overlay.splice(local.overlay.indexOf(mine), 1);
      scheduleLive();
    }
  }
  // A drawing hand is a moving cursor: chunks carry it (no cursor publish while drawing).
  if (live && board.ready && who.client && who.client !== page.client.clientId && points.length >= 2) {
    moveCursor(who, points[points.length - 2], points[points.length - 1]);
  }
}

// --- replay from history ---------------------------------------------------------

// Reads the board's log from the oldest message kept up to `upTo` (the
// subscribe reply's offset) while live messages above it are held, then applies
// those: the split at `upTo` leaves no gap and no duplicate.
async function replay(epoch, upTo) {
  const token = ++board.replayToken;
  board.replaying = true;
  board.ready = false;
  board.needsReplay = false;
  board.held = [];
  resetBoard();
  renderNote();
  let after = 0;
  try {
    while (after < upTo) {
      const r = await page.boardSub.history({ since: { epoch, offset: after }, limit: HISTORY_PAGE });
      if (token !== board.replayToken) return;
      const pubs = r.publications || [];
      if (pubs.length === 0) break;
      for (const p of pubs) {
        if (p.offset > upTo) break;
        apply(p, false);
        board.stats.replayed++;
      }
      after = pubs[pubs.length - 1].offset;
      renderNote(`loading the board… ${Math.min(after, upTo)} of ${upTo}`);
    }
  } catch (err) {
    if (token !== board.replayToken) return;
    // Replayed again after the next (re)subscribe; until then the board is incomplete.
    board.needsReplay = true;
    board.replaying = false;
    renderNote(`cannot load the board: ${err.message}`);
    return;
  }
  if (token !== board.replayToken) return;
  board.replaying = false;
  const held = board.held;
  board.held = [];
  board.stats.held += held.length;
  for (const m of held) apply(m, true);
  board.ready = true;
  scheduleInk(true);
  renderNote();
  scheduleSend();
}

function onBoardMessage(m) {
  if (board.replaying) board.held.push(m);
  else if (!board.needsReplay) apply(m, true);
}

function subscribeBoard() {
  page.boardSub = page.client.subscribe(`board:${page.boardName}`, {
    onSubscribed: (ctx) => {
      // First time (or after a failed replay): the board from history. After a
      // reconnect the client recovers what was missed by itself, in onMessage.
      if (!ctx.resubscribed || board.needsReplay) replay(ctx.epoch, ctx.offset);
    },
    onMessage: onBoardMessage,
    onGap: (ctx) => {
      // The hub could not recover (history lost, new epoch): build the board again.
      // After a subscribe the position is the reply's; mid-stream the message at
      // ctx.offset follows and is held.
      replay(ctx.epoch, ctx.resubscribed ? ctx.offset : ctx.offset - 1);
    },
    onError: (err) => renderNote(`cannot open the board: ${err.message}`),
  });
}

// --- cursors and presence ---------------------------------------------------------

function subscribeCursors() {
  page.cursorSub = page.client.subscribe(`cursors:${page.boardName}`, {
    onSubscribed: () => loadPeople(),
    onMessage: (m) => {
      const who = m.info || {};
      const d = m.data;
      if (!who.client || who.client === page.client.clientId || !d || d.t !== 'c') return;
      if (d.h) hideCursor(who.client);
      else if (Number.isInteger(d.x) && Number.isInteger(d.y)) moveCursor(who, d.x, d.y);
    },
    onJoin: (who) => {
      if (!page.connected) return;
      people.set(who.client, who);
      renderPeople();
    },
    onLeave: (who) => {
      people.delete(who.client);
      removeCursor(who.client);
      renderPeople();
    },
    onError: (err) => renderNote(`no cursors: ${err.message}`),
  });
}

async function loadPeople() {
  try {
    const result = await page.cursorSub.presence();
    if (!page.connected) return;
    people.clear();
    for (const c of result.clients || []) people.set(c.client, c);
    // Cursors of connections that left while we were away.
    for (const id of [...cursors.keys()]) if (!people.has(id)) removeCursor(id);
  } catch {
    people.clear();
  }
  renderPeople();
}

function moveCursor(who, x, y) {
  const clamp = (v) => Math.max(0, Math.min(PRECISION, v));
  let c = cursors.get(who.client);
  if (!c) {
    const name = nameOf(who);
    const color = colorOf(who.user || name);
    const el = document.createElement('div');
    el.className = 'wb-cursor';
    el.dataset.testid = 'cursor';
    el.dataset.client = who.client;
    el.dataset.user = who.user || '';
    el.style.setProperty('--cursor-color', color);
    const label = document.createElement('span');
    label.className = 'wb-cursor-label';
    label.textContent = name;
    el.append(label);
    $('cursors').append(el);
    c = { client: who.client, user: who.user || '', name, color, x: 0, y: 0, hidden: false, el };
    cursors.set(who.client, c);
  }
  c.x = clamp(x);
  c.y = clamp(y);
  c.hidden = false;
  c.el.hidden = false;
  c.el.style.left = `${(100 * c.x) / PRECISION}%`;
  c.el.style.top = `${(100 * c.y) / PRECISION}%`;
}

function hideCursor(client) {
  const c = cursors.get(client);
  if (!c) return;
  c.hidden = true;
  c.el.hidden = true;
}

function removeCursor(client) {
  const c = cursors.get(client);
  if (!c) return;
  c.el.remove();
  cursors.delete(client);
}

// Disconnected, we no longer know who is here or where they point.
function forgetPeople() {
  people.clear();
  for (const id of [...cursors.keys()]) removeCursor(id);
  renderPeople();
}

function renderPeople() {
  const list = $('people');
  list.replaceChildren();
  const users = new Map();
  for (const who of people.values()) {
    const key = who.user || who.client;
    if (!users.has(key)) users.set(key, { user: key, name: nameOf(who) });
  }
  const sorted = [...users.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const u of sorted) {
    const li = document.createElement('li');
    li.dataset.testid = 'board-user';
    li.dataset.user = u.user;
    li.title = u.name;
    const dot = document.createElement('span');
    dot.className = 'wb-dot';
    dot.style.background = colorOf(u.user);
    const name = document.createElement('span');
    name.className = 'wb-person';
    name.textContent = u.name;
    li.append(dot, name);
    list.append(li);
  }
  $('people-count').textContent = page.connected ? String(sorted.length) : '—';
}

// --- sending ----------------------------------------------------------------------

// One publish per SEND_INTERVAL_MS at most, for both channels together:
// retries first, then the oldest unsent stroke chunk or clear, else the cursor.
function scheduleSend() {
  if (local.timer != null || !page.client || page.client.state !== 'connected') return;
  if (!hasWork()) return;
  const wait = Math.max(0, local.lastSendAt + SEND_INTERVAL_MS - performance.now());
  local.timer = setTimeout(() => {
    local.timer = null;
    if (page.client.state === 'connected') sendOne();
    scheduleSend();
  }, wait);
}

function hasWork() {
  return local.retry.length > 0 || (board.ready && nextBoardMessage(false) != null) || local.cursor !== undefined;
}

// The next chunk (or clear) to publish on the board; with `take`, marks it sent.
function nextBoardMessage(take) {
  while (local.queue.length) {
    const item = local.queue[0];
    if (item.clear) {
      if (take) local.queue.shift();
      return { t: 'clear' };
    }
    if (item.cancelled || (item.ended && item.finished)) {
      local.queue.shift();
      continue;
    }
    const unsent = item.points.length - item.sent;
    if (unsent === 0 && item.chunk > 0 && !item.ended) return null;  // waiting for the hand to move
    const count = Math.min(unsent, 2 * MAX_POINTS_PER_CHUNK);
    const data = { t: 's', id: item.id, i: item.chunk, p: item.points.slice(item.sent, item.sent + count) };
    if (item.chunk === 0) {
      data.c = item.color;
      data.w = item.width;
    }
    const last = item.ended && item.sent + count === item.points.length;
    if (last) data.e = 1;
    if (take) {
      item.sent += count;
      item.chunk++;
      if (last) item.finished = true;
    }
    return data;
  }
  return null;
}

function sendOne() {
  const boardChannel = `board:${page.boardName}`;
  const cursorChannel = `cursors:${page.boardName}`;
  let channel;
  let data;
  if (local.retry.length) {
    ({ channel, data } = local.retry.shift());
  } else if (board.ready && (data = nextBoardMessage(true)) != null) {
    channel = boardChannel;
    if (data.t === 's' && local.cursor) local.cursor = undefined;  // the chunk moves the cursor (a hide still goes)
  } else if (local.cursor !== undefined) {
    channel = cursorChannel;
    data = local.cursor ? { t: 'c', x: local.cursor.x, y: local.cursor.y } : { t: 'c', h: 1 };
    local.cursor = undefined;
  } else {
    return;
  }
  local.lastSendAt = performance.now();
  // On the throttle's own clock (monotonic, sub-millisecond), as Unix ms:
  // Date.now() is coarser and may step, so it showed 34 ms gaps as 32.
  local.published.push([performance.timeOrigin + local.lastSendAt, channel]);
  if (local.published.length > 1000) local.published.splice(0, 500);
  page.client.publish(channel, data).catch((err) => {
    // Rate limited or storage unavailable: the same data again (the board's
    // chunks must all arrive); anything else is reported.
    if (channel === boardChannel && (err.code === 110 || err.code === 113)) {
      local.retry.push({ channel, data });
      scheduleSend();
    } else if (channel === boardChannel) {
      renderNote(`not sent: ${err.message}`);
    }
  });
}

function cancelLocal(s) {
  s.cancelled = true;
  if (local.drawing === s) local.drawing = null;
  local.overlay = local.overlay.filter((o) => o !== s);
  scheduleLive();
}

// --- drawing ------------------------------------------------------------------------

const view = { size: 0, ratio: 1, ink: null, live: null, inkFull: false, raf: 0, liveDirty: false };

function resizeBoard() {
  const stage = $('stage').getBoundingClientRect();
  const size = Math.max(120, Math.floor(Math.min(stage.width, stage.height)));
  const ratio = window.devicePixelRatio || 1;
  if (size === view.size && ratio === view.ratio) return;
  view.size = size;
  view.ratio = ratio;
  const el = $('board');
  el.style.width = `${size}px`;
  el.style.height = `${size}px`;
  for (const canvas of [$('ink'), $('live')]) {
    canvas.width = Math.round(size * ratio);
    canvas.height = Math.round(size * ratio);
  }
  view.ink.setTransform(ratio, 0, 0, ratio, 0, 0);
  view.live.setTransform(ratio, 0, 0, ratio, 0, 0);
  view.inkFull = true;
  view.liveDirty = true;
  paint();
}

// Draws a stroke's points from point index `from` (a flat index, even) on.
function drawPoints(ctx, points, from, color, width) {
  const k = view.size / PRECISION;
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = Math.max(1, width * k);
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  if (points.length === 0) return;
  if (points.length === 2) {  // a dot
    ctx.beginPath();
    ctx.arc(points[0] * k, points[1] * k, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  const start = Math.max(0, from - 2);
  ctx.beginPath();
  ctx.moveTo(points[start] * k, points[start + 1] * k);
  for (let i = start + 2; i < points.length; i += 2) ctx.lineTo(points[i] * k, points[i + 1] * k);
  ctx.stroke();
}

function drawIncrement(s, from) {
  if (view.inkFull || !view.ink) return;  // a full redraw is coming anyway
  drawPoints(view.ink, s.points, from, s.color, s.width);
}

function scheduleInk(full) {
  if (full) view.inkFull = true;
  if (!view.raf) view.raf = requestAnimationFrame(paint);
}

function scheduleLive() {
  view.liveDirty = true;
  if (!view.raf) view.raf = requestAnimationFrame(paint);
}

function paint() {
  view.raf = 0;
  if (!view.ink || !view.size) return;
  if (view.inkFull) {
    view.inkFull = false;
    view.ink.clearRect(0, 0, view.size, view.size);
    if (board.ready) for (const s of board.strokes.values()) drawPoints(view.ink, s.points, 0, s.color, s.width);
  }
  if (view.liveDirty) {
    view.liveDirty = false;
    view.live.clearRect(0, 0, view.size, view.size);
    for (const s of local.overlay) drawPoints(view.live, s.points, 0, s.color, s.width);
  }
}

// --- input --------------------------------------------------------------------------

function boardPoint(event) {
  const r = $('board').getBoundingClientRect();
  const q = (v) => Math.max(0, Math.min(PRECISION, Math.round(v * PRECISION)));
  return { x: q((event.clientX - r.left) / r.width), y: q((event.clientY - r.top) / r.height) };
}

function addPoint(stroke, event) {
  const { x, y } = boardPoint(event);
  const n = stroke.points.length;
  if (n >= 2 && stroke.points[n - 2] === x && stroke.points[n - 1] === y) return;
  stroke.points.push(x, y);
}

function setupInput() {
  const el = $('board');
  el.addEventListener('pointerdown', (event) => {
    if (!board.ready || local.drawing || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    el.setPointerCapture(event.pointerId);
    const stroke = {
      id: `${local.prefix}-${local.seq++}`, color: local.color, width: local.width,
      points: [], sent: 0, chunk: 0, ended: false, finished: false, cancelled: false, onBoard: false,
    };
    addPoint(stroke, event);
    local.drawing = stroke;
    local.pointerId = event.pointerId;
    local.queue.push(stroke);
    local.overlay.push(stroke);
    local.cursor = undefined;
    scheduleLive();
    scheduleSend();
  });
  el.addEventListener('pointermove', (event) => {
    if (local.drawing && event.pointerId === local.pointerId) {
      const events = typeof event.getCoalescedEvents === 'function' ? event.getCoalescedEvents() : [];
      for (const e of events.length ? events : [event]) addPoint(local.drawing, e);
      scheduleLive();
      scheduleSend();
    } else if (!local.drawing && event.isPrimary) {
      local.cursor = boardPoint(event);
      scheduleSend();
    }
  });
  const end = (event) => {
    if (event.pointerId !== local.pointerId) return;
    const stroke = local.drawing;
    local.drawing = null;
    local.pointerId = null;
    if (!stroke) return;
    if (event.type === 'pointerup') addPoint(stroke, event);
    stroke.ended = true;
    scheduleLive();
    scheduleSend();
  };
  el.addEventListener('pointerup', end);
  el.addEventListener('pointercancel', end);
  el.addEventListener('pointerleave', (event) => {
    if (local.drawing || !event.isPrimary) return;
    local.cursor = null;
    scheduleSend();
  });
}

function clearBoard() {
  if (local.drawing) {
    local.drawing.ended = true;
    local.drawing = null;
    local.pointerId = null;
  }
  local.queue.push({ clear: true });
  scheduleSend();
}

// --- toolbar --------------------------------------------------------------------------

function setupToolbar() {
  const colors = $('colors');
  const own = colorOf(page.name);
  const palette = [own, ...PALETTE.filter((c) => c !== own)];
  local.color = own;
  for (const color of palette) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'wb-swatch';
    b.dataset.testid = 'color';
    b.dataset.color = color;
    b.setAttribute('role', 'radio');
    b.setAttribute('aria-label', color === own ? `your colour ${color}` : `colour ${color}`);
    b.style.background = color;
    b.addEventListener('click', () => {
      local.color = color;
      renderTools();
    });
    colors.append(b);
  }
  const widths = $('widths');
  for (const w of WIDTHS) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'wb-width';
    b.dataset.testid = 'width';
    b.dataset.width = String(w.value);
    b.setAttribute('role', 'radio');
    b.setAttribute('aria-label', `${w.name} line`);
    const dot = document.createElement('span');
    dot.style.width = dot.style.height = `${Math.round(4 + w.value / 16)}px`;
    b.append(dot);
    b.addEventListener('click', () => {
      local.width = w.value;
      renderTools();
    });
    widths.append(b);
  }
  $('clear').addEventListener('click', clearBoard);
  renderTools();
}

function renderTools() {
  for (const b of document.querySelectorAll('[data-testid="color"]')) {
    b.setAttribute('aria-checked', String(b.dataset.color === local.color));
  }
  for (const b of document.querySelectorAll('[data-testid="width"]')) {
    b.setAttribute('aria-checked', String(Number(b.dataset.width) === local.width));
    b.style.color = local.color;
  }
}

// --- status -------------------------------------------------------------------------

let noteOverride = null;

function renderNote(text) {
  if (text !== undefined) noteOverride = text || null;
  let note = noteOverride || '';
  if (!noteOverride) {
    if (board.replaying) note = 'loading the board…';
    else if (board.ready && board.stats.missing > 0) note = 'the oldest strokes are no longer in the history';
  }
  $('board-note').textContent = note;
  $('board-app').dataset.ready = String(board.ready);
}

function renderStatus() {
  const client = page.client;
  const status = $('status');
  let state = client ? 'disconnected' : 'idle';
  let text = client ? 'disconnected' : 'not connected';
  if (client && client.state === 'connected') {
    state = 'connected';
    text = 'connected';
  } else if (client && client.state === 'connecting') {
    if (navigator.onLine === false) {
      state = 'offline';
      text = 'offline — you can keep drawing';
    } else if (client.reconnectAt != null) {
      state = 'reconnecting';
      text = `reconnecting in ${Math.max(0, Math.ceil((client.reconnectAt - Date.now()) / 1000))}s`;
    } else {
      state = 'connecting';
      text = 'connecting…';
    }
  }
  status.dataset.state = state;
  status.textContent = text;
  $('reconnect-now').hidden = state !== 'reconnecting';
  const was = page.connected;
  page.connected = state === 'connected';
  if (was && !page.connected) forgetPeople();
  if (page.connected) scheduleSend();
}

// --- start --------------------------------------------------------------------------

async function fetchToken(name) {
  const response = await fetch(`/demo/token?user=${encodeURIComponent(name)}`, { cache: 'no-store' });
  if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
  const body = await response.json();
  if (!body || typeof body.token !== 'string') throw new Error('token endpoint sent no token');
  return body.token;
}

function websocketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/connection/websocket`;
}

async function start(name) {
  page.name = name;
  const token = await fetchToken(name);
  const params = new URLSearchParams(location.search);
  const client = new Duplex(websocketUrl(), {
    token,
    getToken: () => fetchToken(name),
    debug: params.has('debug'),
  });
  page.client = client;
  // 'connected' is emitted before the client resends its own queue: our
  // publishes start from a timer (scheduleSend), so they stay behind it.
  for (const event of ['state', 'connected', 'disconnected', 'reconnecting']) client.on(event, renderStatus);
  client.on('error', (err) => console.warn('duplex:', err.message));
  window.addEventListener('online', renderStatus);
  window.addEventListener('offline', renderStatus);
  setInterval(() => { if (client.reconnectAt != null) renderStatus(); }, 1000);

  $('login').hidden = true;
  $('board-app').hidden = false;
  $('connection').hidden = false;
  const me = $('me');
  me.hidden = false;
  me.textContent = name;
  me.style.setProperty('--me-color', colorOf(name));
  $('to-chat').href = `index.html?name=${encodeURIComponent(name)}`;

  setupToolbar();
  setupInput();
  view.ink = $('ink').getContext('2d');
  view.live = $('live').getContext('2d');
  new ResizeObserver(resizeBoard).observe($('stage'));
  resizeBoard();

  subscribeBoard();
  subscribeCursors();
  client.connect();
  renderStatus();
  renderNote();
}

// For tests and curious developers: the board as built from the channel.
function exposeForTests() {
  window.__board = {
    page,
    get ready() { return board.ready; },
    get offset() { return board.offset; },
    stats: board.stats,
    published: local.published,
    strokes: () => [...board.strokes.values()].map((s) => ({
      id: s.id, user: s.user, color: s.color, width: s.width, points: [...s.points], ended: s.ended,
    })),
    local: () => local.overlay.map((s) => ({ id: s.id, points: [...s.points], ended: s.ended })),
    sending: () => local.queue.length + local.retry.length,
    pointerId: () => local.pointerId,
    cursors: () => [...cursors.values()].map((c) => ({
      client: c.client, user: c.user, name: c.name, color: c.color, x: c.x, y: c.y, hidden: c.hidden,
    })),
    people: () => [...people.values()].map((p) => ({ client: p.client, user: p.user })),
    // Painted pixels of the ink layer (every 4th pixel of every 4th row).
    inkPixels() {
      const canvas = $('ink');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let y = 0; y < canvas.height; y += 4) {
        for (let x = 0; x < canvas.width; x += 4) if (data[(y * canvas.width + x) * 4 + 3] > 0) n++;
      }
      return n;
    },
    // Whether the ink layer is painted at board point (x, y) (0..PRECISION).
    inkAt(x, y) {
      const canvas = $('ink');
      const px = Math.min(canvas.width - 1, Math.round((x / PRECISION) * canvas.width));
      const py = Math.min(canvas.height - 1, Math.round((y / PRECISION) * canvas.height));
      return canvas.getContext('2d').getImageData(px, py, 1, 1).data[3] > 0;
    },
    PRECISION,
  };
}

function init() {
  exposeForTests();
  const params = new URLSearchParams(location.search);
  const boardName = params.get('board');
  if (boardName && BOARD_PATTERN.test(boardName)) page.boardName = boardName;
  const nameInput = $('name-input');
  const preset = params.get('name');
  if (preset && NAME_PATTERN.test(preset)) nameInput.value = preset;

  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!NAME_PATTERN.test(name)) {
      $('login-error').textContent = 'Use 1–32 letters, digits, "_", "." or "-".';
      return;
    }
    $('login-button').disabled = true;
    $('login-error').textContent = '';
    try {
      await start(name);
    } catch (err) {
      $('login-error').textContent = `Cannot sign in: ${err.message}`;
      $('login-button').disabled = false;
      page.client = null;
    }
  });
  $('reconnect-now').addEventListener('click', () => {
    if (page.client) page.client.reconnectNow();
    renderStatus();
  });
  renderStatus();
}

init();
