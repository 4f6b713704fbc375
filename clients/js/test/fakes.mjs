// Test doubles shared by the client tests: a fake clock with timers and a fake WebSocket whose
// "server" is a plain function. Not a test file itself (no .test. in the name).

/** A manual clock; setTimeout/clearTimeout fire only when the test advances time. */
export class FakeClock {
  constructor(start = 1_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + ms, fn });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** Move time forward, firing due timers in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
}

/** Let pending promise callbacks run (several hops of async/await chains). */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A fake WebSocket class bound to `server(frame, socket)`, called for every frame the client
 * sends; the server answers with socket.reply(...) / socket.emitEvent(...).
 * Opens itself on the next microtask unless autoOpen is false.
 */
export function fakeSocketClass(server = () => {}, { autoOpen = true } = {}) {
  return class FakeWebSocket {
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.listeners = {};
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
      if (autoOpen) queueMicrotask(() => this.open());
    }

    addEventListener(type, fn) {
      (this.listeners[type] ??= []).push(fn);
    }

    removeEventListener(type, fn) {
      this.listeners[type] = (this.listeners[type] ?? []).filter((f) => f !== fn);
    }

    dispatch(type, ev) {
      for (const fn of this.listeners[type] ?? []) fn(ev);
      this[`on${type}`]?.(ev);
    }

    open() {
      this.readyState = 1;
      this.dispatch('open', {});
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('not open');
      const frame = JSON.parse(text);
      this.sent.push(frame);
      server(frame, this);
    }

    /** Deliver a frame to the client, asynchronously like a real socket. */
    receive(frame) {
      queueMicrotask(() => this.receiveNow(frame));
    }

    receiveNow(frame) {
      if (this.readyState !== 1) return;
      this.dispatch('message', { data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }

    reply(frame, data) {
      this.receive({ re: frame.id, ok: true, data });
    }

    fail(frame, code, message = code) {
      this.receive({ re: frame.id, ok: false, error: { code, message } });
    }

    close(code = 1000, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.dispatch('close', { code, reason, wasClean: true });
    }

    /** The server drops the connection. */
    drop(code = 1006) {
      this.readyState = 3;
      this.dispatch('close', { code, reason: '', wasClean: false });
    }
  };
}

/**
 * A client wired to a fake server. `handlers[type](frame, socket)` answers a command; without a
 * handler the frame is left unanswered. time.ping is answered at once unless overridden.
 */
export async function connectedClient(ShareTubeClient, { handlers = {}, clock = new FakeClock(), connect = true, ...options } = {}) {
  const server = (frame, socket) => {
    const handler = handlers[frame.type] ?? (frame.type === 'time.ping'
      ? (f, s) => s.reply(f, { t0: f.data.t0, server_ms: clock.now() })
      : null);
    handler?.(frame, socket);
  };
  const WebSocketImpl = fakeSocketClass(server);
  const client = new ShareTubeClient({
    url: 'ws://127.0.0.1:8000/ws',
    token: 'tok en/+',
    WebSocketImpl,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    ...options,
  });
  if (connect) {
    await client.connect();
    await flush();
  }
  const socket = () => WebSocketImpl.instances.at(-1);
  return { client, clock, socket, WebSocketImpl };
}
