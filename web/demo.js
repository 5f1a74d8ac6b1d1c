// The demo page: a chat (rooms, presence, history, offline queue) and a live
// dashboard of the server's figures, on web/duplex.js. User data only ever
// reaches the page through textContent.
import { Duplex } from './duplex.js';

const DEFAULT_ROOM = 'lobby';
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;
const HISTORY_LIMIT = 50;
const MAX_RENDERED = 500;       // messages kept per room in the page
const STATS_CHANNEL = 'stats:node';
const STATS_POINTS = 120;

const $ = (id) => document.getElementById(id);

const page = {
  client: null,
  name: '',
  rooms: new Map(),   // room -> Room
  active: null,
  stats: [],
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
  let state = 'disconnected';
  let text = 'disconnected';
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
    this.unread = 0;
    this.list = el('ol', { className: 'messages', dataset: { testid: 'messages', room: name } });
    this.list.hidden = true;
    $('message-lists').append(this.list);
    this.sub = null;
  }

  messageElement(data, info) {
    const name = data && typeof data.name === 'string' ? data.name : (info && info.user) || '?';
    const text = data && typeof data.text === 'string' ? data.text : JSON.stringify(data);
    const li = el('li', { dataset: { testid: 'message' } },
      el('span', { className: 'name', dataset: { testid: 'message-name' }, text: name }),
      el('span', { className: 'text', dataset: { testid: 'message-text' }, text }));
    if (name === page.name) li.classList.add('mine');
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

  addMessage(offset, data, info) {
    if (offset == null || this.byOffset.has(offset)) return false;
    this.place(this.messageElement(data, info), offset);
    this.scroll();
    return true;
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
      },
      failed: (error) => {
        li.dataset.state = 'failed';
        badge.textContent = `not sent: ${error.message}`;
      },
    };
  }

  clearMessages() {
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
      for (const pub of result.publications || []) this.addMessage(pub.offset, pub.data, pub.info);
    } catch (err) {
      this.addNotice(`history unavailable: ${err.message}`);
    }
  }

  async loadPresence() {
    try {
      const result = await this.sub.presence();
      this.presence.clear();
      for (const c of result.clients || []) this.presence.set(c.client, c);
    } catch (err) {
      this.presence.clear();
    }
    if (page.active === this) renderPresence();
  }

  subscribe() {
    this.sub = page.client.subscribe(this.channel, {
      onSubscribed: (ctx) => {
        // First time: the recent past from history. After a reconnect the client
        // recovers what was missed by itself (onMessage with recovered: true).
        if (!ctx.resubscribed) this.loadHistory();
        this.loadPresence();
      },
      onMessage: (m) => this.addMessage(m.offset, m.data, m.info),
      onGap: () => {
        this.clearMessages();
        this.addNotice('some messages could not be recovered; reloaded the recent history');
        this.loadHistory();
      },
      onJoin: (who) => {
        this.presence.set(who.client, who);
        if (who.client !== page.client.clientId) this.addNotice(`${displayName(who)} joined`);
        if (page.active === this) renderPresence();
      },
      onLeave: (who) => {
        this.presence.delete(who.client);
        this.addNotice(`${displayName(who)} left`);
        if (page.active === this) renderPresence();
      },
      onError: (err) => this.addNotice(`cannot join ${this.channel}: ${err.message}`),
    });
  }
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
  renderRooms();
  renderPresence();
  const box = $('message-lists');
  box.scrollTop = box.scrollHeight;
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
  $('presence-count').textContent = String(sorted.length);
}

// --- sending ------------------------------------------------------------------

function send(text) {
  const room = page.active;
  if (!room) return;
  const data = { text, name: page.name };
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

function addStat(data) {
  if (!data || typeof data !== 'object' || typeof data.time !== 'number') return;
  const last = page.stats[page.stats.length - 1];
  if (last && data.time <= last.time) return;
  page.stats.push(data);
  if (page.stats.length > STATS_POINTS) page.stats.shift();
  const fmt = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : '—');
  $('stat-connections').textContent = fmt(data.connections);
  for (const s of SERIES) $(s.stat).textContent = fmt(data[s.key]);
  drawChart();
}

function niceMax(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
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
  ctx.fillText(`last ${STATS_POINTS} s`, pad.left, height - 5);
  if (points.length < 2) return;

  const x = (i) => pad.left + (plotW * (STATS_POINTS - points.length + i)) / (STATS_POINTS - 1);
  const line = (color, value, max) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const y = pad.top + plotH * (1 - Math.min(1, (Number(value(p)) || 0) / max));
      if (i === 0) ctx.moveTo(x(i), y);
      else ctx.lineTo(x(i), y);
    });
    ctx.stroke();
  };
  for (const s of SERIES) line(s.color, (p) => p[s.key], rateMax);
  line('#8e44ad', (p) => p.connections, connMax);
}

function subscribeStats() {
  const sub = page.client.subscribe(STATS_CHANNEL, {
    onSubscribed: (ctx) => {
      $('stats-note').textContent = '';
      if (ctx.resubscribed) return;
      // Prefill the chart when the namespace keeps history.
      sub.history({ limit: STATS_POINTS }).then((r) => {
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
  const me = $('me');
  me.hidden = false;
  me.textContent = name;

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

  window.addEventListener('resize', drawChart);
  renderStatus();
}

init();
