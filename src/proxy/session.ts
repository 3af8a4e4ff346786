/**
 * One client connection, once its pool and key are known: lease → dial (with
 * failover) → relay → outcome. Bytes the client sends before a backend
 * accepts are buffered (up to 64 KiB, then the client is paused) and
 * delivered exactly once, to whichever backend finally accepts.
 */
import type { Socket } from 'node:net';
import type { BackendRuntime } from '../health/state.js';
import type { Lease } from '../placement/lease.js';
import type { PoolRuntime } from '../placement/pool.js';
import type { ChosenKey } from '../routing/keys.js';
import { ConnectError, READS_TO_CALLBACK, type ConnectFailure, type Dialer, type OnRead } from './dialer.js';
import type { FrontendRuntime } from './frontend.js';
import { closed, type CloseReason } from './outcome.js';
import type { Peeked } from './peek.js';
import { buildProxyHeader, signatureOf, type Endpoint } from './proxy-header.js';

export const EARLY_BYTES_LIMIT = 64 * 1024;

export type { CloseReason };

export class Session {
  private backendSock: Socket | null = null;
  private backend: BackendRuntime | null = null;
  private early: Buffer[] = [];
  /** client → backend is paused until the backend drains. */
  private waitingDrain = false;
  private earlyBytes = 0;
  private clientEnded = false;
  private reason: CloseReason | null = null;
  private readonly started = performance.now();
  private closed = false;
  /** The connection's claim on a backend and its key's pin; released once, in finish(). */
  private lease: Lease | null = null;
  /** A PROXY header l4lb wrote to the backend: not the client's bytes. */
  private headerBytes = 0;
  private openSockets = 1;
  private guard: boolean;
  /** timeouts.idle once relaying (0: none, or not relaying yet); the client's byte count at the last sweep, and since when it stood still. */
  private idleMs = 0;
  private seen = 0;
  private quietSince = 0;
  /** The backend's reads come to onBackendData (the dialer honoured BACKEND_READS), not through pipe(). */
  private direct = false;
  /** The socket to reset rather than close (the other side failed). */
  private abortOther: Socket | null = null;
  /** After a failed connect: the backends tried, with the outcome of each (`pg1:refused`); logged when more than one. */
  private attempts: string[] | null = null;

  constructor(
    private readonly fe: FrontendRuntime,
    private readonly pool: PoolRuntime,
    /** The route taken (its name, else its index), or null for a frontend without routes. */
    private readonly route: string | null,
    private readonly client: Socket,
    private readonly init: Peeked,
    private readonly key: ChosenKey,
    /** accept_proxy optional, untrusted peer: a first chunk carrying a PROXY signature closes the connection. */
    guardProxy: boolean,
    private readonly dialer: Dialer,
    private readonly onDone: (s: Session) => void,
  ) {
    this.guard = guardProxy;
    this.clientEnded = init.ended;
    if (init.early !== null && init.early.length > 0) {
      this.early.push(init.early);
      this.earlyBytes = init.early.length;
    }
  }

  get frontend(): string {
    return this.fe.name;
  }

  get poolName(): string {
    return this.pool.name;
  }

  get backendRuntime(): BackendRuntime | null {
    return this.backend;
  }

  /** Bytes relayed so far: client → backend, backend → client. */
  get bytesIn(): number {
    return this.backendSock ? this.backendSock.bytesWritten - this.headerBytes : 0;
  }

  get bytesOut(): number {
    return this.client.bytesWritten;
  }

  start(): void {
    const c = this.client;
    (c as Tagged)[SESSION] = this;
    c.on('data', clientData);
    c.once('end', clientEarlyEnd);
    c.on('error', clientError);
    c.once('close', socketClose);
    void this.connect();
  }

  /** Lease a backend, dial it, and on failure the next the lease gives, until one accepts or none is left. */
  private async connect(): Promise<void> {
    let lease = await this.pool.placement.acquire(this.key.key);
    if (lease === null) {
      this.finish('no_backend');
      return;
    }
    if (this.closed) {
      lease.release(); // the client left while placement was asked
      return;
    }
    this.lease = lease;
    const pool = this.pool;
    for (;;) {
      const name = lease.backend;
      const b = pool.backendByName(name);
      try {
        if (!b) throw new ConnectError('error', `backend ${name} left the config`);
        const sock = await this.dialer.connect(b.plan.address, pool.plan.connectMs, BACKEND_READS);
        if (this.closed) {
          sock.destroy();
          return;
        }
        lease.connected();
        this.attempts?.push(`${name}:ok`);
        this.attach(b, sock);
        return;
      } catch (err) {
        if (this.closed) return; // finish() released the lease
        const why: ConnectFailure = err instanceof ConnectError ? err.reason : 'error';
        (this.attempts ??= []).push(`${name}:${why}`);
        if (why === 'local') this.fe.resources.exhausted(`connect to ${name}: ${(err as Error).message}`);
        const next: Lease | null = await lease.failed(why);
        if (this.fe.log.isLevelEnabled('debug')) this.fe.log.debug({ client: this.init.client.address, backend: name, why, next: next?.backend ?? null }, 'connect failed');
        if (this.closed) return;
        if (next === null) break;
        lease = next;
        this.lease = next;
        this.fe.stats.failovers++;
      }
    }
    this.finish('connect_failed');
  }

  /** Stop now (shutdown grace ran out). */
  abort(reason: CloseReason): void {
    this.finish(reason);
  }

  onEarlyData(chunk: Buffer): void {
    this.early.push(chunk);
    this.earlyBytes += chunk.length;
    if (this.guard) {
      // Judge the first bytes together: a segment may hold only the start of a signature ("\r\n", "PRO").
      const sig = signatureOf(this.early.length === 1 ? chunk : Buffer.concat(this.early));
      if (sig === 1 || sig === 2) {
        this.finish('untrusted_proxy');
        return;
      }
      if (sig === 'maybe') return; // fewer bytes than a signature: wait for more (or the end)
      this.guard = false;
    }
    if (this.backendSock !== null) this.startRelay();
    else if (this.earlyBytes >= EARLY_BYTES_LIMIT) this.client.pause();
  }

  onEarlyEnd(): void {
    this.clientEnded = true;
    // Ended before a whole signature came: nothing left to guard; deliver what there is, and the end.
    if (this.guard) {
      this.guard = false;
      if (this.backendSock !== null) this.startRelay();
    }
  }

  private attach(b: BackendRuntime, sock: Socket): void {
    const c = this.client;
    this.backend = b;
    this.backendSock = sock;
    (sock as Tagged)[SESSION] = this;
    b.total++;
    this.openSockets++;
    sock.on('error', backendError);
    sock.once('close', socketClose);
    sock.once('end', backendEnd);
    const version = b.plan.sendProxy;
    if (version !== 'off') {
      const dst = this.init.destination ?? { address: c.localAddress ?? '0.0.0.0', port: c.localPort ?? 0 };
      const header = buildProxyHeader(version, this.init.client, localEndpoint(dst));
      this.headerBytes = header.length;
      sock.write(header);
    }
    if ((sock as Tagged)[READS_TO_CALLBACK]) {
      // backend → client without the stream machinery: reads land in one shared buffer (see backendRead).
      this.direct = true;
      const before = (sock as Tagged)[EARLY_READS];
      if (before) for (const chunk of before) c.write(chunk);
      (sock as Tagged)[EARLY_READS] = undefined;
    } else {
      sock.pipe(c);
    }
    // Idle: no timer per socket (a socket timer is re-armed on every chunk); App.sweep() looks at the byte counts.
    this.idleMs = this.pool.plan.idleMs;
    this.quietSince = performance.now();
    // Under the untrusted-PROXY guard, nothing goes to the backend before the client's first bytes are checked.
    if (this.guard && !this.clientEnded) c.resume();
    else this.startRelay();
  }

  /** Deliver the buffered bytes once, then let the client stream straight to the backend. */
  private startRelay(): void {
    const c = this.client;
    const sock = this.backendSock!;
    c.removeListener('data', clientData);
    c.removeListener('end', clientEarlyEnd);
    c.once('end', clientEnd);
    for (const chunk of this.early) sock.write(chunk);
    this.early = [];
    if (this.clientEnded) {
      this.onClientEnd();
    } else {
      // What pipe() does, with shared listener functions instead of pipe's closures per connection.
      c.on('data', clientRelayData);
      c.resume(); // it may have been paused at the early-bytes limit
    }
  }

  onClientData(chunk: Buffer): void {
    const sock = this.backendSock!;
    if (sock.write(chunk) || this.waitingDrain) return;
    this.waitingDrain = true;
    this.client.pause();
    sock.once('drain', backendDrain);
  }

  onBackendDrain(): void {
    this.waitingDrain = false;
    if (!this.closed) this.client.resume();
  }

  /** The client's FIN: pass it on once what it sent is written. */
  onClientEnd(): void {
    this.reason ??= 'client_closed';
    const sock = this.backendSock;
    if (sock && !sock.destroyed && !sock.writableEnded) sock.end();
  }

  onBackendEnd(): void {
    this.reason ??= 'backend_closed';
    const c = this.client;
    if (this.direct && !c.destroyed && !c.writableEnded) c.end(); // what pipe() would do: FIN after the last bytes
  }

  /** A backend read (direct mode): false stops reading until the client drains. */
  onBackendData(chunk: Buffer): boolean {
    const c = this.client;
    if (c.destroyed) return true; // the pair is closing: finish() destroys the backend too
    if (c.write(chunk)) return true;
    c.once('drain', clientDrain);
    return false;
  }

  onClientDrain(): void {
    if (!this.closed) this.backendSock?.resume();
  }

  /**
   * Called every sweep tick (App): closes the pair once the client's bytes, read or written, have not moved
   * for timeouts.idle. Never early: a change is dated at the tick that sees it, which is after the bytes moved.
   */
  sweep(now: number): void {
    if (this.idleMs === 0 || this.closed) return;
    const c = this.client;
    const seen = c.bytesRead + c.bytesWritten;
    if (seen !== this.seen) {
      this.seen = seen;
      this.quietSince = now;
    } else if (now - this.quietSince >= this.idleMs) {
      this.finish('idle_timeout');
    }
  }

  /** The client failed (a reset, mostly): the backend is reset too, so it cannot take a cut request for a whole one. */
  onClientError(): void {
    this.abortOther = this.backendSock;
    if (this.reason === 'backend_closed' || this.reason === 'client_closed') this.reason = null; // a reset after a FIN is still a reset
    this.finish(this.reason ?? 'client_error');
  }

  /**
   * The backend failed mid-stream: the client is reset too, so a protocol that reads until EOF sees the
   * answer was cut (a clean FIN would say it was whole). Also after the client half-closed: the answer
   * was still coming.
   */
  onBackendError(): void {
    this.abortOther = this.client;
    if (this.reason === 'client_closed') this.reason = null;
    this.finish(this.reason ?? 'backend_error');
  }

  /** Each socket closes once both its directions are done (or it failed); the pair is done when both have. */
  onSocketClose(): void {
    if (--this.openSockets === 0) {
      this.finish(this.reason ?? 'client_closed');
      return;
    }
    if (this.closed) return;
    // One side went away without an error: end the other gracefully, so what it still has to send is flushed.
    const other = this.client.destroyed ? this.backendSock : this.client;
    this.reason ??= this.client.destroyed ? 'client_closed' : 'backend_closed';
    if (other && !other.writableEnded) other.end();
  }

  private finish(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.reason ??= reason;
    const c = this.client;
    const s = this.backendSock;
    this.close(c);
    if (s) this.close(s);
    this.lease?.release();
    this.fe.sourceLimits?.release(this.init.client.address);
    const attempts = this.attempts;
    closed(this.fe, {
      client: this.init.client.address,
      key: this.key.key,
      keySource: this.key.source,
      pool: this.pool.name,
      route: this.route,
      backend: this.backend,
      bytesIn: s ? s.bytesWritten - this.headerBytes : 0,
      bytesOut: c.bytesWritten,
      durationMs: Math.round(performance.now() - this.started),
      reason: this.reason,
      attempts: attempts !== null && attempts.length > 1 ? attempts : undefined,
      detail: this.reason === 'connect_failed' && attempts?.every((a) => a.endsWith(':local')) ? 'l4lb is out of file descriptors (or local ports)' : undefined,
      wasActive: true,
    });
    this.onDone(this);
  }

  /** Reset the socket whose peer must learn the other side failed; close the rest. */
  private close(sock: Socket): void {
    if (sock.destroyed) return;
    if (sock === this.abortOther) sock.resetAndDestroy();
    else sock.destroy();
  }
}

/** A socket's local address as an Endpoint (IPv4-mapped IPv6 folded to IPv4). */
function localEndpoint(e: Endpoint): Endpoint {
  return e.address.startsWith('::ffff:') && e.address.includes('.') ? { address: e.address.slice(7), port: e.port } : e;
}

// One set of listener functions for every session (no per-connection closures): each finds its
// session on the socket it is called on.
const SESSION = Symbol('l4lb.session');
/** Backend bytes read before the session attached the socket (copies). */
const EARLY_READS = Symbol('l4lb.earlyReads');
type Tagged = Socket & { [SESSION]?: Session; [READS_TO_CALLBACK]?: boolean; [EARLY_READS]?: Buffer[] | undefined };

/**
 * Backend reads (Node's `onread`): every backend socket reads into this one buffer, and each read is
 * copied out before the next can land there (a write may keep referring to what it was given until the
 * kernel takes it). For request/response traffic this skips the Readable/pipe machinery per chunk; see
 * bench/NOTES.md for what it saves.
 */
const SHARED_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function backendRead(this: Tagged, bytes: number, buf: Uint8Array): boolean {
  const chunk = Buffer.allocUnsafe(bytes);
  chunk.set(buf.subarray(0, bytes));
  const s = this[SESSION];
  if (s !== undefined) return s.onBackendData(chunk);
  (this[EARLY_READS] ??= []).push(chunk);
  return true;
}

const BACKEND_READS: OnRead = { buffer: SHARED_READ_BUFFER, callback: backendRead as OnRead['callback'] };

function clientDrain(this: Tagged): void {
  this[SESSION]!.onClientDrain();
}

function clientData(this: Tagged, chunk: Buffer): void {
  this[SESSION]!.onEarlyData(chunk);
}
function clientEarlyEnd(this: Tagged): void {
  this[SESSION]!.onEarlyEnd();
}
function clientRelayData(this: Tagged, chunk: Buffer): void {
  this[SESSION]!.onClientData(chunk);
}
function backendDrain(this: Tagged): void {
  this[SESSION]!.onBackendDrain();
}
function clientEnd(this: Tagged): void {
  this[SESSION]!.onClientEnd();
}
function clientError(this: Tagged): void {
  this[SESSION]!.onClientError();
}
function backendEnd(this: Tagged): void {
  this[SESSION]!.onBackendEnd();
}
function backendError(this: Tagged): void {
  this[SESSION]!.onBackendError();
}
function socketClose(this: Tagged): void {
  this[SESSION]!.onSocketClose();
}
