/**
 * Active health checks: a TCP connect every `interval` (optionally `send`
 * bytes and wait for `expect` bytes), `rise` successes to come up, `fall`
 * failures to go down. Failures of real traffic count toward `fall` too.
 * Checks of a frontend's backends are staggered over the interval, and a
 * backend's next check starts only after its last one finished.
 */
import type { Socket } from 'node:net';
import { ConnectError, type Dialer } from '../proxy/dialer.js';

/** A check l4lb could not run (its own resources ran out): counts neither way. */
const INCONCLUSIVE = Symbol('inconclusive');
import type { BackendRuntime, HealthPolicy, TransitionListener } from './state.js';

export interface CheckOptions {
  readonly interval: number;
  readonly timeout: number;
  readonly rise: number;
  readonly fall: number;
  readonly send: string | null;
  readonly expect: string | null;
}

export interface CheckObserver {
  (b: BackendRuntime, seconds: number, ok: boolean): void;
}

/** `PING\r\n` written in a plain YAML scalar arrives with literal backslashes: decode the usual escapes. */
export function decodeEscapes(text: string): Buffer {
  if (!text.includes('\\')) return Buffer.from(text, 'utf8');
  const out = text.replace(/\\(x[0-9a-fA-F]{2}|[rnt0\\])/g, (_m, e: string) => {
    switch (e[0]) {
      case 'r':
        return '\r';
      case 'n':
        return '\n';
      case 't':
        return '\t';
      case '0':
        return '\0';
      case 'x':
        return String.fromCharCode(parseInt(e.slice(1), 16));
      default:
        return '\\';
    }
  });
  return Buffer.from(out, 'latin1');
}

export class ActiveHealth implements HealthPolicy {
  private readonly timers = new Map<BackendRuntime, NodeJS.Timeout>();
  private readonly inflight = new Set<Socket>();
  private stopped = false;
  private readonly send: Buffer | null;
  private readonly expect: Buffer | null;

  constructor(
    private readonly backends: readonly BackendRuntime[],
    private readonly opts: CheckOptions,
    private readonly dialer: Dialer,
    private readonly onTransition: TransitionListener,
    private readonly observe: CheckObserver = () => {},
  ) {
    this.send = opts.send === null ? null : decodeEscapes(opts.send);
    this.expect = opts.expect === null ? null : decodeEscapes(opts.expect);
  }

  start(): void {
    const n = this.backends.length;
    this.backends.forEach((b, i) => this.schedule(b, Math.floor((this.opts.interval * i) / n)));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const s of this.inflight) s.destroy();
  }

  success(b: BackendRuntime): void {
    b.fails = 0;
  }

  /** A failure of real traffic: counts toward `fall` like a failed check. */
  failure(b: BackendRuntime, why: string): void {
    b.connectFailures++;
    this.failed(b, `traffic: ${why}`);
  }

  private schedule(b: BackendRuntime, delay: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => void this.run(b), delay);
    t.unref();
    this.timers.set(b, t);
  }

  private async run(b: BackendRuntime): Promise<void> {
    const t0 = performance.now();
    const why = await this.check(b);
    if (this.stopped) return;
    const ms = performance.now() - t0;
    if (why !== INCONCLUSIVE) {
      this.observe(b, ms / 1000, why === null);
      if (why === null) this.passed(b);
      else this.failed(b, `check: ${why}`);
    }
    this.schedule(b, Math.max(0, this.opts.interval - ms));
  }

  private passed(b: BackendRuntime): void {
    b.fails = 0;
    b.oks++;
    if (b.oks >= this.opts.rise && b.transition(['down'], 'up')) this.onTransition(b, 'up', `${b.oks} consecutive checks passed`);
  }

  private failed(b: BackendRuntime, why: string): void {
    b.oks = 0;
    b.fails++;
    if (b.fails >= this.opts.fall && b.transition(['up'], 'down')) this.onTransition(b, 'down', `${b.fails} consecutive failures (last: ${why})`);
  }

  /** null when healthy, else why not; INCONCLUSIVE when l4lb itself could not open a socket (EMFILE...). */
  private async check(b: BackendRuntime): Promise<string | null | typeof INCONCLUSIVE> {
    const deadline = performance.now() + this.opts.timeout;
    let sock: Socket;
    try {
      sock = await this.dialer.connect(b.plan.address, this.opts.timeout);
    } catch (err) {
      if (err instanceof ConnectError && err.reason === 'local') return INCONCLUSIVE;
      return `connect ${(err as Error).message}`;
    }
    if (this.stopped) {
      sock.destroy();
      return null;
    }
    this.inflight.add(sock);
    try {
      if (this.send) sock.write(this.send);
      if (!this.expect) return null;
      return await this.awaitExpect(sock, this.expect, Math.max(1, deadline - performance.now()));
    } finally {
      this.inflight.delete(sock);
      sock.destroy();
    }
  }

  private awaitExpect(sock: Socket, expect: Buffer, ms: number): Promise<string | null> {
    return new Promise((resolve) => {
      let got = Buffer.alloc(0);
      const done = (why: string | null) => {
        clearTimeout(timer);
        sock.removeAllListeners('data');
        resolve(why);
      };
      const timer = setTimeout(() => done(`expected ${JSON.stringify(expect.toString('latin1'))} within the timeout`), ms);
      sock.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]).subarray(-Math.max(expect.length * 2, 4096)); // bounded
        if (got.includes(expect)) done(null);
      });
      sock.on('error', (err) => done(`read: ${err.message}`));
      sock.on('end', () => done('closed before the expected answer'));
    });
  }
}
