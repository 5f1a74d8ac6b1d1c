// The demo page: a chat (rooms, presence, history, offline queue, typing
// indicators, a "new since you were last here" divider) and a live dashboard
// of the server's figures, on web/client/duplex.js. User data only ever reaches the
// page through textContent.
import { Duplex } from './duplex.js';

const DEFAULT_ROOM = 'lobby';
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;
const HISTORY_LIMIT = 50;
const MAX_RENDERED = 500;       // messages kept per room in the page
const STATS_CHANNEL = 'stats:node';
const STATS_WINDOW_MS = 5 * 60 * 1000;  // the chart shows the last 5 minutes
const STATS_POINTS = 600;               // kept at most (two per second for the window)
// Typing indicators travel on typing:ROOM, a namespace without history
// (config/demo.toml), so they never enter the room's history. A typist
// announces itself at most once per TYPING_SEND_MS; the others drop the
// indicator TYPING_TTL_MS after the last announcement, at once when the
// typist's message arrives, or when the typist leaves the room.
const TYPING_SEND_MS = 2000;
const TYPING_TTL_MS = 4500;
// The last offset this browser showed, per user and room (localStorage).
const SEEN_KEY = (channel) => `duplex-demo:seen:${page.name}:${channel}`;

const $ = (id) => document.getElementById(id);

const page = {
  client: null,
  name: '',
  rooms: new Map(),   // room -> Room
  active: null,
  stats: [],
  connected: false,
  typingPublished: [],   // the last typing announcements sent (tests check the throttle)
};

// --- small DOM helpers ------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'className') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function roomOfChannel(channel) {
  return channel.startsWith('chat:') ? channel.slice(5) : channel;
}

// --- connection status ------------------------------------------------------

let statusTicker = null;

function renderStatus() {
  const client = page.client;
  const status = $('status');
  // 'idle' until signed in: nothing has been tried, so nothing is wrong yet.
  let state = client ? 'disconnected' : 'idle';
  let text = client ? 'disconnected' : 'not connected';
  if (client) {
    if (client.state === 'connected') {
      state = 'connected';
      text = 'connected';
    } else if (client.state === 'connecting') {
      if (navigator.onLine === false) {
        state = 'offline';
        text = 'offline — waiting for network';
      } else if (client.reconnectAt != null) {
        state = 'reconnecting';
        const seconds = Math.max(0, Math.ceil((client.reconnectAt - Date.now()) / 1000));
        text = `reconnecting in ${seconds}s`;
      } else {
        state = 'connecting';
        text = 'connecting…';
      }
    }
  }
  status.dataset.state = state;
  status.textContent = text;
  // After an outage the next attempt may be up to backoffCap away: offer it now.
  $('reconnect-now').hidden = state !== 'reconnecting';
  const wasConnected = page.connected;
  page.connected = state === 'connected';
  if (wasConnected && !page.connected) {
    forgetPresence();
    forgetTyping();
  }
  $('transport').textContent = (client && client.transport) || '—';
  const queued = client ? client.queued : 0;
  $('queued').textContent = queued ? `${queued} message${queued === 1 ? '' : 's'} waiting for the connection` : '';
  // A countdown needs a tick; stop it when nothing counts down.
  const counting = state === 'reconnecting' || state === 'offline';
  if (counting && !statusTicker) statusTicker = setInterval(renderStatus, 250);
  if (!counting && statusTicker) {
    clearInterval(statusTicker);
    statusTicker = null;
  }
}

// --- rooms ------------------------------------------------------------------

class Room {
  constructor(name) {
    this.name = name;
    this.channel = `chat:${name}`;
    this.byOffset = new Map();     // offset -> <li>, every message rendered once
    this.presence = new Map();     // client id -> {user, name}
    this.typing = new Map();       // client id -> {name, timer}: who is typing here
    this.typingSub = null;
    this.typingSentAt = 0;         // when this page last announced typing here (0: not typing)
    this.seen = loadSeen(this.channel);  // {epoch, offset} shown on the last visit, or null
    this.stored = this.seen;             // what this visit has shown so far (saved as it grows)
    this.epoch = null;
    this.unread = 0;
    this.list = el('ol', { className: 'messages', dataset: { testid: 'messages', room: name } });
    this.list.hidden = true;
    $('message-lists').append(this.list);
    this.sub = null;
  }

  // `data` is whatever was published: the page's own {text, name, time}, a
  // bare string (`duplex connect --publish` sends non-JSON lines as strings),
  // or any JSON from a backend. `info` is the publisher's connection, absent
  // for publishes made through the HTTP API. `receivedAt` stands in for a
  // time the data does not carry (live messages only).
  messageElement(data, info, receivedAt = null) {
    const object = data !== null && typeof data === 'object' && !Array.isArray(data) ? data : null;
    let name = object && typeof object.name === 'string' ? object.name : info && info.user ? info.user : null;
    const fromServer = name === null;
    if (fromServer) name = info ? 'anonymous' : 'server';
    let text;
    if (typeof data === 'string') text = data;
    else if (object && typeof object.text === 'string') text = object.text;
    else text = JSON.stringify(data);
    const li = el('li', { dataset: { testid: 'message' } },
      el('span', { className: 'name', dataset: { testid: 'message-name' }, text: name }),
      el('span', { className: 'text', dataset: { testid: 'message-text' }, text }));
    const time = object && Number.isFinite(object.time) ? object.time : receivedAt;
    if (time != null) {
      const when = new Date(time);
      li.append(el('time', {
        datetime: when.toISOString(), title: when.toLocaleString(), dataset: { testid: 'message-time' },
        text: when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }),
      }));
    }
    if (fromServer && !info) li.classList.add('from-server');
    if (!fromServer && name === page.name) li.classList.add('mine');
    return li;
  }

  // Keeps the list in offset order; pending messages stay at the end.
  place(li, offset) {
    li.dataset.offset = String(offset);
    li.dataset.state = 'sent';
    let before = null;
    for (const child of this.list.children) {
      if (child.dataset.state === 'pending' || child.dataset.state === 'failed') { before = child; break; }
      if (child.dataset.testid === 'message' && Number(child.dataset.offset) > offset) { before = child; break; }
    }
    this.list.insertBefore(li, before);
    this.byOffset.set(offset, li);
    this.trim();
  }

  addMessage(offset, data, info, receivedAt = null) {
    if (offset == null || this.byOffset.has(offset)) return false;
    this.place(this.messageElement(data, info, receivedAt), offset);
    if (info) this.stopTyping(info.client);  // the typist's message is here: no longer typing
    this.scroll();
    this.markSeen();
    return true;
  }

  // Remembers the newest offset shown while this room is on screen, for the
  // divider on the next visit.
  markSeen() {
    if (page.active !== this || document.visibilityState === 'hidden' || this.epoch == null) return;
    const offsets = [...this.byOffset.keys()];
    if (offsets.length === 0) return;
    const offset = Math.max(...offsets);
    if (this.stored && this.stored.epoch === this.epoch && this.stored.offset >= offset) return;
    this.stored = { epoch: this.epoch, offset };
    saveSeen(this.channel, this.stored);
  }

  // "new since you were last here" above the first message newer than the
  // last one this browser showed (the visit before this page was opened).
  showDivider() {
    const seen = this.seen;
    if (!seen || seen.epoch !== this.epoch) return null;  // first visit, or the room's history was reset
    const first = [...this.list.children].find((li) => li.dataset.testid === 'message' &&
      li.dataset.state === 'sent' && Number(li.dataset.offset) > seen.offset);
    if (!first) return null;
    const divider = el('li', { className: 'divider', dataset: { testid: 'new-divider', after: String(seen.offset) } },
      el('span', { text: 'new since you were last here' }));
    this.list.insertBefore(divider, first);
    return divider;
  }

  addNotice(text) {
    const li = el('li', { className: 'notice', dataset: { testid: 'notice' }, text });
    const firstPending = [...this.list.children].find((c) => c.dataset.state === 'pending');
    this.list.insertBefore(li, firstPending || null);
    this.scroll(false);
  }

  addPending(data) {
    const li = this.messageElement(data, null);
    li.dataset.state = 'pending';
    const badge = el('span', { className: 'badge', dataset: { testid: 'message-badge' }, text: 'pending' });
    li.append(badge);
    this.list.append(li);
    this.scroll();
    return {
      sent: (offset) => {
        badge.remove();
        if (this.byOffset.has(offset)) li.remove();   // its push arrived first
        else this.place(li, offset);
        this.markSeen();
      },
      failed: (error) => {
        li.dataset.state = 'failed';
        badge.textContent = `not sent: ${error.message}`;
      },
    };
  }

  clearMessages() {
    for (const li of this.list.querySelectorAll('[data-testid="new-divider"]')) li.remove();
    for (const li of this.byOffset.values()) li.remove();
    this.byOffset.clear();
  }

  trim() {
    if (this.byOffset.size <= MAX_RENDERED) return;
    const oldest = Math.min(...this.byOffset.keys());
    this.byOffset.get(oldest).remove();
    this.byOffset.delete(oldest);
  }

  scroll(unread = true) {
    if (page.active !== this) {
      if (unread) {
        this.unread++;
        renderRooms();
      }
      return;
    }
    const box = $('message-lists');
    box.scrollTop = box.scrollHeight;
  }

  async loadHistory() {
    try {
      const result = await this.sub.history({ limit: HISTORY_LIMIT });
      this.epoch = result.epoch;
      for (const pub of result.publications || []) this.addMessage(pub.offset, pub.data, pub.info);
      const divider = this.showDivider();
      if (divider && page.active === this) divider.scrollIntoView({ block: 'start' });
      this.markSeen();
    } catch (err) {
      this.addNotice(`history unavailable: ${err.message}`);
    }
  }

  async loadPresence() {
    try {
      const result = await this.sub.presence();
      this.presence.clear();
      if (!page.connected) return;  // the answer came too late: the connection is gone again
      for (const c of result.clients || []) this.presence.set(c.client, c);
    } catch (err) {
      this.presence.clear();
    }
    if (page.active === this) renderPresence();
  }

  subscribe() {
    this.sub = page.client.subscribe(this.channel, {
      onSubscribed: (ctx) => {
        this.epoch = ctx.epoch;
        // First time: the recent past from history. After a reconnect the client
        // recovers what was missed by itself (onMessage with recovered: true).
        if (!ctx.resubscribed) this.loadHistory();
        this.loadPresence();
      },
      onMessage: (m) => this.addMessage(m.offset, m.data, m.info, m.recovered ? null : Date.now()),
      onGap: () => {
        this.clearMessages();
        this.addNotice('some messages could not be recovered; reloaded the recent history');
        this.loadHistory();
      },
      onJoin: (who) => {
        if (page.connected) this.presence.set(who.client, who);
        if (who.client !== page.client.clientId) this.addNotice(`${displayName(who)} joined`);
        if (page.active === this) renderPresence();
      },
      onLeave: (who) => {
        this.presence.delete(who.client);
        this.stopTyping(who.client);
        this.addNotice(`${displayName(who)} left`);
        if (page.active === this) renderPresence();
      },
      onError: (err) => this.addNotice(`cannot join ${this.channel}: ${err.message}`),
    });
    this.typingSub = page.client.subscribe(`typing:${this.name}`, {
      onMessage: (m) => this.onTyping(m),
      onError: (err) => console.warn(`no typing indicators in #${this.name}: ${err.message}`),
    });
  }

  // {typing: true, name} while someone types, {typing: false} when they stop
  // without sending. Never shows this user's own typing (any of their tabs).
  onTyping(m) {
    const who = m.info;
    if (!who || who.client === page.client.clientId || who.user === page.name) return;
    const data = m.data && typeof m.data === 'object' ? m.data : {};
    if (data.typing !== true) {
      this.stopTyping(who.client);
      return;
    }
    const previous = this.typing.get(who.client);
    if (previous) clearTimeout(previous.timer);
    const name = typeof data.name === 'string' ? data.name : who.user || 'someone';
    const timer = setTimeout(() => this.stopTyping(who.client), TYPING_TTL_MS);
    this.typing.set(who.client, { name, timer });
    if (page.active === this) renderTyping();
  }

  stopTyping(client) {
    const entry = this.typing.get(client);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.typing.delete(client);
    if (page.active === this) renderTyping();
  }

  // Called on every edit of the message box while this room is shown.
  announceTyping(text) {
    const now = Date.now();
    if (!page.client || page.client.state !== 'connected') return;  // never queued: stale by the time it goes
    if (text.trim() === '') {
      if (this.typingSent(now)) this.publishTyping({ typing: false });
      this.typingSentAt = 0;
      return;
    }
    if (now - this.typingSentAt < TYPING_SEND_MS) return;
    this.typingSentAt = now;
    this.publishTyping({ typing: true, name: page.name });
  }

  typingSent(now) {
    return this.typingSentAt !== 0 && now - this.typingSentAt < TYPING_TTL_MS;
  }

  publishTyping(data) {
    page.typingPublished.push({ channel: this.typingSub.channel, data, at: Date.now() });
    if (page.typingPublished.length > 50) page.typingPublished.shift();
    page.client.publish(this.typingSub.channel, data).catch(() => {});
  }
}

// "alice is typing…", "alice and bob are typing…", "3 people are typing…".
function typingText(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

function renderTyping() {
  const room = page.active;
  const names = room ? [...new Set([...room.typing.values()].map((t) => t.name))].sort() : [];
  const box = $('typing');
  box.textContent = typingText(names);
  box.dataset.count = String(names.length);
}

// Disconnected, announcements stop arriving: drop them rather than show them
// for the rest of their time.
function forgetTyping() {
  for (const room of page.rooms.values()) {
    for (const entry of room.typing.values()) clearTimeout(entry.timer);
    room.typing.clear();
  }
  renderTyping();
}

function loadSeen(channel) {
  try {
    const value = JSON.parse(localStorage.getItem(SEEN_KEY(channel)) || 'null');
    if (value && typeof value.epoch === 'string' && Number.isFinite(value.offset)) return value;
  } catch (err) {
    // no storage (private mode) or a value from something else: no divider
  }
  return null;
}

function saveSeen(channel, value) {
  try {
    localStorage.setItem(SEEN_KEY(channel), JSON.stringify(value));
  } catch (err) {
    // storage full or disabled: the divider is a nicety
  }
}

// Disconnected, we no longer know who is here: show nothing rather than a
// list that goes stale. The resubscribe after the reconnect loads it again.
function forgetPresence() {
  for (const room of page.rooms.values()) room.presence.clear();
  renderPresence();
}

function displayName(who) {
  if (who.info && typeof who.info.name === 'string') return who.info.name;
  return who.user || 'anonymous';
}

function joinRoom(name) {
  let room = page.rooms.get(name);
  if (!room) {
    room = new Room(name);
    page.rooms.set(name, room);
    room.subscribe();
  }
  switchRoom(name);
}

function leaveRoom(name) {
  const room = page.rooms.get(name);
  if (!room || name === DEFAULT_ROOM) return;
  room.sub.unsubscribe().catch(() => {});
  room.typingSub.unsubscribe().catch(() => {});
  for (const entry of room.typing.values()) clearTimeout(entry.timer);
  room.list.remove();
  page.rooms.delete(name);
  if (page.active === room) switchRoom(DEFAULT_ROOM);
  else renderRooms();
}

function switchRoom(name) {
  const room = page.rooms.get(name);
  if (!room) return;
  page.active = room;
  room.unread = 0;
  for (const r of page.rooms.values()) r.list.hidden = r !== room;
  $('room-title').textContent = `#${name}`;
  // Short enough for a phone's message box; a long room name is in the title already.
  $('message-input').placeholder = name.length <= 12 ? `Message #${name}` : 'Message';
  renderRooms();
  renderPresence();
  renderTyping();
  const box = $('message-lists');
  box.scrollTop = box.scrollHeight;
  room.markSeen();
}

function renderRooms() {
  const list = $('rooms');
  list.replaceChildren();
  for (const room of page.rooms.values()) {
    const li = el('li', { dataset: { testid: 'room', room: room.name } });
    if (room === page.active) li.classList.add('active');
    const open = el('button', { type: 'button', className: 'room', text: `#${room.name}` });
    open.addEventListener('click', () => switchRoom(room.name));
    li.append(open);
    if (room.unread) li.append(el('span', { className: 'unread', dataset: { testid: 'unread' }, text: String(room.unread) }));
    if (room.name !== DEFAULT_ROOM) {
      const leave = el('button', { type: 'button', className: 'leave', title: `leave #${room.name}`, text: '×' });
      leave.addEventListener('click', () => leaveRoom(room.name));
      li.append(leave);
    }
    list.append(li);
  }
}

// One line per user, with the number of their connections.
function renderPresence() {
  const list = $('presence');
  list.replaceChildren();
  const room = page.active;
  const users = new Map();
  if (room) {
    for (const who of room.presence.values()) {
      const key = who.user || who.client;
      const entry = users.get(key) || { name: displayName(who), user: key, devices: 0 };
      entry.devices++;
      users.set(key, entry);
    }
  }
  const sorted = [...users.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const u of sorted) {
    const li = el('li', { dataset: { testid: 'presence-user', user: u.user } }, el('span', { text: u.name }));
    if (u.devices > 1) li.append(el('span', { className: 'devices', text: `×${u.devices}` }));
    list.append(li);
  }
  const count = page.connected ? String(sorted.length) : '—';
  $('presence-count').textContent = count;
  $('presence-count-short').textContent = count;
  $('presence-note').hidden = page.connected || !page.client;
}

// --- sending ------------------------------------------------------------------

function send(text) {
  const room = page.active;
  if (!room) return;
  const data = { text, name: page.name, time: Date.now() };
  room.typingSentAt = 0;  // the message ends the typing; the next keystroke announces again
  const pending = room.addPending(data);
  page.client.publish(room.channel, data).then((ack) => {
    pending.sent(ack.offset);
    renderStatus();
  }, (err) => {
    pending.failed(err);
    renderStatus();
  });
  renderStatus();
}

// --- dashboard ------------------------------------------------------------------

const SERIES = [
  { key: 'messages_in', color: '#3461d6', stat: 'stat-in' },
  { key: 'messages_out', color: '#1f9d55', stat: 'stat-out' },
  { key: 'publications', color: '#c77700', stat: 'stat-publications' },
];

// Points arrive live and, after subscribing, from history (older ones, maybe
// after a few live ones): kept sorted by time, each time once.
function addStat(data) {
  if (!data || typeof data !== 'object' || typeof data.time !== 'number') return;
  const stats = page.stats;
  let i = stats.length;
  while (i > 0 && stats[i - 1].time > data.time) i--;
  if (i > 0 && stats[i - 1].time === data.time) return;
  stats.splice(i, 0, data);
  while (stats.length > STATS_POINTS || (stats.length && stats[0].time < stats[stats.length - 1].time - STATS_WINDOW_MS)) stats.shift();
  const latest = stats[stats.length - 1];
  const fmt = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : '—');
  $('stat-connections').textContent = fmt(latest.connections);
  for (const s of SERIES) $(s.stat).textContent = fmt(latest[s.key]);
  drawChart();
}

function niceMax(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

// Runs of points without an outage between them: a gap of more than 2.5
// publish intervals (the median spacing) means the server or the connection
// was away, and the chart shows it as a gap, not as a line across it.
function segmentsOf(points) {
  if (points.length === 0) return [];
  const spacings = points.slice(1).map((p, i) => p.time - points[i].time).sort((a, b) => a - b);
  const interval = spacings.length ? spacings[Math.floor(spacings.length / 2)] : 1000;
  const gap = Math.max(2.5 * interval, 2500);
  const segments = [[points[0]]];
  for (let i = 1; i < points.length; i++) {
    if (points[i].time - points[i - 1].time > gap) segments.push([]);
    segments[segments.length - 1].push(points[i]);
  }
  return segments;
}

function drawChart() {
  const canvas = $('chart');
  canvas.dataset.points = String(page.stats.length);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 320;
  const height = canvas.clientHeight || 200;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const pad = { left: 40, right: 36, top: 10, bottom: 20 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const points = page.stats;
  const rateMax = niceMax(Math.max(1, ...points.flatMap((p) => SERIES.map((s) => Number(p[s.key]) || 0))));
  // A multiple of 4, so the quarter grid lines are whole connection counts.
  const connMax = 4 * Math.ceil(niceMax(Math.max(1, ...points.map((p) => Number(p.connections) || 0))) / 4);

  ctx.font = '10px system-ui, sans-serif';
  ctx.strokeStyle = '#e1e4ea';
  ctx.fillStyle = '#6b7385';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + (plotH * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(pad.left + plotW, y);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText(String(+(rateMax * (1 - i / 4)).toFixed(1)), pad.left - 4, y + 3);
    ctx.textAlign = 'left';
    ctx.fillText(String(+(connMax * (1 - i / 4)).toFixed(1)), pad.left + plotW + 4, y + 3);
  }
  ctx.textAlign = 'left';
  ctx.fillText(`last ${STATS_WINDOW_MS / 60000} minutes`, pad.left, height - 5);
  const segments = segmentsOf(points);
  canvas.dataset.segments = String(segments.length);
  if (points.length < 2) return;

  // x is time: the window ends at the newest point.
  const end = points[points.length - 1].time;
  const x = (p) => pad.left + plotW * (1 - (end - p.time) / STATS_WINDOW_MS);
  const line = (color, value, max) => {
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    for (const segment of segments) {
      const y = (p) => pad.top + plotH * (1 - Math.min(1, (Number(value(p)) || 0) / max));
      if (segment.length === 1) {  // a lone point between two gaps: a dot
        ctx.fillRect(x(segment[0]) - 1, y(segment[0]) - 1, 2, 2);
        continue;
      }
      ctx.beginPath();
      segment.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p), y(p)) : ctx.lineTo(x(p), y(p))));
      ctx.stroke();
    }
  };
  for (const s of SERIES) line(s.color, (p) => p[s.key], rateMax);
  line('#8e44ad', (p) => p.connections, connMax);
}

function subscribeStats() {
  const sub = page.client.subscribe(STATS_CHANNEL, {
    onSubscribed: (ctx) => {
      $('stats-note').textContent = '';
      if (ctx.resubscribed) return;
      // Start with the last minutes: the stats namespace keeps history
      // (config/demo.toml), so the chart is not empty until traffic comes.
      sub.history({ limit: STATS_WINDOW_MS / 1000 }).then((r) => {
        for (const pub of r.publications || []) addStat(pub.data);
      }, () => {});
    },
    onMessage: (m) => addStat(m.data),
    onError: (err) => { $('stats-note').textContent = `stats unavailable: ${err.message}`; },
  });
}

// --- start ------------------------------------------------------------------------

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
  const token = await fetchToken(name);  // fails here, on the login form, if the endpoint is off
  const params = new URLSearchParams(location.search);
  const client = new Duplex(websocketUrl(), {
    token,
    getToken: () => fetchToken(name),
    debug: params.has('debug'),
  });
  page.client = client;
  for (const event of ['state', 'connected', 'disconnected', 'reconnecting', 'queued']) client.on(event, renderStatus);
  client.on('error', (err) => console.warn('duplex:', err.message));
  window.addEventListener('online', renderStatus);
  window.addEventListener('offline', renderStatus);

  $('login').hidden = true;
  $('app').hidden = false;
  $('connection').hidden = false;
  const me = $('me');
  me.hidden = false;
  me.textContent = name;
  $('to-whiteboard').href = `whiteboard.html?name=${encodeURIComponent(name)}`;

  joinRoom(DEFAULT_ROOM);
  const room = params.get('room');
  if (room && ROOM_PATTERN.test(room)) joinRoom(room);
  subscribeStats();
  client.connect();
  renderStatus();
  drawChart();
  $('message-input').focus();
}

function init() {
  // A handle for tests and curious developers (window.duplexDemo.client).
  window.duplexDemo = page;

  const nameInput = $('name-input');
  const preset = new URLSearchParams(location.search).get('name');
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

  $('room-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('room-input');
    const name = input.value.trim();
    if (!ROOM_PATTERN.test(name)) return;
    input.value = '';
    joinRoom(name);
  });

  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('message-input');
    const text = input.value.trim();
    if (!text || !page.client) return;
    input.value = '';
    send(text);
  });
  $('message-input').addEventListener('input', (event) => {
    if (page.active) page.active.announceTyping(event.target.value);
  });
  document.addEventListener('visibilitychange', () => { if (page.active) page.active.markSeen(); });

  $('reconnect-now').addEventListener('click', () => {
    if (page.client) page.client.reconnectNow();
    renderStatus();
  });

  // Phone layout: rooms/presence and the stats open over the chat, one at a time.
  const panels = [['toggle-sidebar', 'sidebar'], ['toggle-dashboard', 'dashboard']];
  for (const [button, panel] of panels) {
    $(button).addEventListener('click', () => {
      const open = !$(panel).classList.contains('open');
      for (const [b, p] of panels) {
        $(p).classList.toggle('open', open && p === panel);
        $(b).setAttribute('aria-expanded', String(open && p === panel));
      }
      if (open && panel === 'dashboard') drawChart();  // its canvas had no size while hidden
    });
  }
  // Choosing a room closes the panel it was chosen in.
  $('rooms').addEventListener('click', (event) => {
    if (event.target.closest('button.room')) {
      $('sidebar').classList.remove('open');
      $('toggle-sidebar').setAttribute('aria-expanded', 'false');
    }
  });

  window.addEventListener('resize', drawChart);
  renderStatus();
}

init();
