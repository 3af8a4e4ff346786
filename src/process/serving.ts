/**
 * The data plane of a process that serves connections (single process, or a
 * worker): the listening sockets, the open sessions and the idle sweep. It
 * asks its Runtimes for frontends and pools; it knows nothing of tables,
 * stores or the admin API.
 */
import type { Config } from '../config/schema.js';
import type { BackendRuntime } from '../health/state.js';
import type { Logger } from '../log.js';
import type { PoolRuntime } from '../placement/pool.js';
import type { Dialer } from '../proxy/dialer.js';
import type { FrontendRuntime } from '../proxy/frontend.js';
import { Listener, type SessionHost } from '../proxy/listener.js';
import type { Session } from '../proxy/session.js';
import type { Runtimes } from './runtimes.js';

export interface Live {
  /** Bytes of open sessions, per frontend and per backend: not yet in the counters. */
  readonly frontends: ReadonlyMap<string, { in: number; out: number }>;
  readonly backends: ReadonlyMap<BackendRuntime, { in: number; out: number }>;
}

export class Serving implements SessionHost {
  readonly sessions = new Set<Session>();
  private listeners: Listener[] = [];
  private stopping = false;
  private whenEmpty: (() => void) | null = null;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly runtimes: Runtimes,
    readonly dialer: Dialer,
    private readonly log: Logger,
    /** Report a bound socket (a worker tells the primary); else it is logged. */
    private readonly onListening?: (frontend: string, address: string, port: number) => void,
  ) {}

  frontend(name: string): FrontendRuntime | undefined {
    return this.stopping ? undefined : this.runtimes.frontend(name);
  }

  pool(name: string): PoolRuntime | undefined {
    return this.stopping ? undefined : this.runtimes.pool(name);
  }

  /** Bind every listen address of `config`; throws BindError (nothing left bound) if one fails. */
  async start(config: Config): Promise<void> {
    this.listeners = await this.bindAll(config, new Map());
    this.scheduleSweep(config);
  }

  /**
   * Bind what `next` adds and close what it drops; throws BindError and changes nothing if a new
   * address cannot be bound. Call before the runtimes switch to the new plan.
   */
  async rebind(next: Config): Promise<void> {
    const { keep, rest } = this.matchListeners(next);
    const bound = await this.bindAll(next, keep);
    for (const [l, fe] of keep) l.frontend = fe; // only now: a failed bind keeps the running config whole
    for (const l of rest) void l.close();
    this.listeners = bound;
    this.scheduleSweep(next);
  }

  /** Stop accepting, wait for open connections up to `graceMs`, then close the rest. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    await Promise.all(this.listeners.map((l) => l.close()));
    if (this.sessions.size > 0) {
      this.log.info({ open: this.sessions.size, grace_ms: graceMs }, 'waiting for open connections');
      await this.drained(graceMs);
      for (const s of [...this.sessions]) s.abort('shutdown');
    }
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /** Bound addresses of a frontend (the real port for :0). */
  boundAddresses(frontend: string): string[] {
    const out: string[] = [];
    for (const l of this.listeners) {
      if (l.frontend !== frontend) continue;
      const h = l.address.host;
      out.push(h.includes(':') ? `[${h}]:${l.port}` : `${h}:${l.port}`);
    }
    return out;
  }

  live(): Live {
    const frontends = new Map<string, { in: number; out: number }>();
    const backends = new Map<BackendRuntime, { in: number; out: number }>();
    for (const s of this.sessions) {
      const f = frontends.get(s.frontend) ?? { in: 0, out: 0 };
      f.in += s.bytesIn;
      f.out += s.bytesOut;
      frontends.set(s.frontend, f);
      const b = s.backendRuntime;
      if (b) {
        const x = backends.get(b) ?? { in: 0, out: 0 };
        x.in += s.bytesIn;
        x.out += s.bytesOut;
        backends.set(b, x);
      }
    }
    return { frontends, backends };
  }

  sessionEnded(s: Session): void {
    this.sessions.delete(s);
    if (this.sessions.size === 0) this.whenEmpty?.();
  }

  /**
   * The running listeners the next config asks for again, however it writes them: a fixed address
   * matches a listener bound there (also one the old config wrote as port 0); a port-0 address keeps
   * its frontend's port-0 listener on that host. Each listener is kept at most once.
   */
  private matchListeners(next: Config): { keep: Map<Listener, string>; rest: Listener[] } {
    const free = new Set(this.listeners);
    const keep = new Map<Listener, string>();
    const take = (pred: (l: Listener) => boolean, frontend: string): void => {
      for (const l of free) {
        if (!pred(l)) continue;
        free.delete(l);
        keep.set(l, frontend);
        return;
      }
    };
    const zero: { fe: string; host: string }[] = [];
    for (const fe of next.frontends) {
      for (const a of fe.listen) {
        if (a.port === 0) zero.push({ fe: fe.name, host: a.host });
        else take((l) => l.address.host === a.host && l.port === a.port, fe.name);
      }
    }
    for (const z of zero) take((l) => l.address.port === 0 && l.frontend === z.fe && l.address.host === z.host, z.fe);
    return { keep, rest: [...free] };
  }

  /** Bind what `config` asks for beyond `kept` (listener → the frontend it will serve). */
  private async bindAll(config: Config, kept: ReadonlyMap<Listener, string>): Promise<Listener[]> {
    const out = [...kept.keys()];
    const fresh: Listener[] = [];
    try {
      for (const fe of config.frontends) {
        const mine = out.filter((l) => kept.get(l) === fe.name);
        for (const a of fe.listen) {
          // already kept: the same fixed address, or a port-0 listener of this frontend on this host
          const k = mine.find((l) => l.address.host === a.host && (a.port === 0 ? l.address.port === 0 : l.port === a.port));
          if (k) {
            mine.splice(mine.indexOf(k), 1);
            continue;
          }
          const l = new Listener(a, fe.name, this);
          await l.listen();
          fresh.push(l);
          out.push(l);
          if (this.onListening) this.onListening(fe.name, a.host, l.port);
          else this.log.info({ frontend: fe.name, address: a.host, port: l.port }, 'listening');
        }
      }
    } catch (err) {
      await Promise.all(fresh.map((l) => l.close()));
      throw err;
    }
    return out;
  }

  /**
   * Idle timeouts: one timer for every connection, ticking at a quarter of the shortest timeouts.idle
   * (between 50 ms and 1 s), instead of a timer per socket re-armed on every chunk. A pair closes between
   * idle and idle + 2 ticks after its last byte; never before.
   */
  private scheduleSweep(config: Config): void {
    const idle = Math.min(...config.pools.map((p) => p.timeouts.idle).filter((ms) => ms > 0));
    const tick = Number.isFinite(idle) ? Math.min(1000, Math.max(50, Math.floor(idle / 4))) : 1000;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = setInterval(() => this.sweep(), tick);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const s of this.sessions) s.sweep(now);
  }

  /** Resolves when the last open session ends, or after graceMs. */
  private drained(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.whenEmpty = null;
        resolve();
      };
      const timer = setTimeout(finish, graceMs);
      this.whenEmpty = finish;
    });
  }
}
