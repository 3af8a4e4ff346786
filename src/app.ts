/**
 * The composition root: Config → frontend runtimes, listeners, health
 * checks and the admin API. A reload builds new runtimes and swaps them in;
 * a stop closes listeners and lets open connections finish for up to
 * shutdown_grace.
 */
import type { AdminAction, BackendStatus, Control, FrontendStatus, Lookup, Status } from './admin/control.js';
import { AdminServer } from './admin/server.js';
import type { Config } from './config/schema.js';
import type { BackendRuntime } from './health/state.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics/registry.js';
import { netDialer, type Dialer } from './proxy/dialer.js';
import type { RouteClient } from './proxy/route.js';
import { Listener, type SessionHost } from './proxy/listener.js';
import type { Session } from './proxy/session.js';
import type { PersistenceEntry } from './routing/persistence.js';
import { FrontendRuntime } from './runtime.js';
import type { RedisStore } from './store/redis.js';
import { PersistenceSet } from './store/persistence-set.js';
import { VERSION } from './version.js';

export interface AppOptions {
  /** In a worker: how sessions of a frontend route (through the primary). */
  readonly remoteRoute?: (frontend: string) => RouteClient;
  /** In a worker: report bound sockets instead of logging them. */
  readonly onListening?: (frontend: string, address: string, port: number) => void;
  /** In the primary of workers: bind nothing (workers serve), and add the workers' figures to /status. */
  readonly primary?: { mergeStatus(own: Status): Promise<Status> };
}

export class App implements SessionHost, Control {
  readonly sessions = new Set<Session>();
  /** Loaded only with an admin listener: prom-client costs memory nobody else needs. */
  private metrics: Metrics | null = null;
  private runtimes = new Map<string, FrontendRuntime>();
  /** Tables, stores and snapshots; unused in a worker (the primary holds them). */
  private readonly persistence: PersistenceSet;
  /** Keyed by listenKey(). */
  private listeners = new Map<string, Listener>();
  private admin: AdminServer | null = null;
  private stopping: Promise<void> | null = null;
  private readonly started = Date.now();

  constructor(
    private config: Config,
    readonly log: Logger,
    readonly dialer: Dialer = netDialer,
    private readonly opts: AppOptions = {},
  ) {
    this.persistence = new PersistenceSet(log);
  }

  private get isWorker(): boolean {
    return this.opts.remoteRoute !== undefined;
  }

  runtime(frontend: string): FrontendRuntime | undefined {
    return this.stopping ? undefined : this.runtimes.get(frontend);
  }

  /** Bind every listen address and the admin listener; throws BindError (nothing left bound) if one fails. */
  async start(): Promise<void> {
    this.runtimes = this.buildRuntimes(this.config);
    if (!this.isWorker) await this.persistence.load();
    if (!this.opts.primary) this.listeners = await this.bindAll(this.config, new Map());
    const a = this.config.admin;
    if (a && !this.isWorker) {
      const { Metrics } = require('./metrics/registry.js') as typeof import('./metrics/registry.js');
      this.metrics = new Metrics();
      this.admin = new AdminServer({ host: a.listen.host, port: a.listen.port, token: a.token }, this, this.metrics, this.log);
      try {
        await this.admin.listen();
      } catch (err) {
        await Promise.all([...this.listeners.values()].map((l) => l.close()));
        throw err;
      }
    }
    this.startChecks(this.runtimes);
  }

  private startChecks(runtimes: ReadonlyMap<string, FrontendRuntime>): void {
    this.scheduleSweep();
    if (this.isWorker) return;
    for (const rt of runtimes.values()) rt.start();
    this.persistence.schedule();
  }

  /** Apply a validated config. Throws BindError and keeps the running config if a new address cannot be bound. */
  async reload(next: Config): Promise<void> {
    const keep = new Map<string, Listener>();
    for (const fe of next.frontends) {
      for (const a of fe.listen) {
        const l = this.listeners.get(listenKey(fe.name, a));
        if (l) keep.set(listenKey(fe.name, a), l);
      }
    }
    const bound = this.opts.primary ? keep : await this.bindAll(next, keep);
    const runtimes = this.buildRuntimes(next, this.runtimes);
    for (const [k, l] of this.listeners) if (!bound.has(k)) void l.close();
    for (const rt of this.runtimes.values()) rt.stop();
    for (const [name, rt] of this.runtimes) if (!runtimes.has(name)) for (const b of rt.backends) b.dispose();
    for (const fe of next.frontends) for (const a of fe.listen) {
      const l = bound.get(listenKey(fe.name, a));
      if (l) l.frontend = fe.name;
    }
    if (JSON.stringify(next.admin ?? null) !== JSON.stringify(this.config.admin ?? null)) {
      this.log.warn('admin settings changed: they take effect at the next restart');
    }
    this.listeners = bound;
    this.runtimes = runtimes;
    this.config = next;
    this.startChecks(runtimes);
  }

  /** Stop accepting, wait for open connections up to shutdown_grace, then close the rest. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all([...this.listeners.values()].map((l) => l.close()));
      for (const rt of this.runtimes.values()) rt.stop();
      if (this.sessions.size > 0) {
        this.log.info({ open: this.sessions.size, grace_ms: this.config.shutdown_grace }, 'waiting for open connections');
        await this.drained(this.config.shutdown_grace);
        for (const s of [...this.sessions]) s.abort('shutdown');
      }
      if (this.sweeper) clearInterval(this.sweeper);
      for (const rt of this.runtimes.values()) for (const b of rt.backends) b.dispose();
      if (!this.isWorker) await this.persistence.close();
      await this.admin?.close();
    })();
    return this.stopping;
  }

  // --- Control (admin API) ---------------------------------------------

  accepting(): boolean {
    return this.stopping === null;
  }

  status(): Status | Promise<Status> {
    const own = this.ownStatus();
    return this.opts.primary ? this.opts.primary.mergeStatus(own) : own;
  }

  private ownStatus(): Status {
    const live = new Map<string, { in: number; out: number }>();
    const liveBackend = new Map<BackendRuntime, { in: number; out: number }>();
    for (const s of this.sessions) {
      const f = live.get(s.frontend) ?? { in: 0, out: 0 };
      f.in += s.bytesIn;
      f.out += s.bytesOut;
      live.set(s.frontend, f);
      const b = s.backendRuntime;
      if (b) {
        const x = liveBackend.get(b) ?? { in: 0, out: 0 };
        x.in += s.bytesIn;
        x.out += s.bytesOut;
        liveBackend.set(b, x);
      }
    }
    const frontends = [...this.runtimes.values()].map((rt): FrontendStatus => {
      const st = rt.stats;
      const l = live.get(rt.name);
      return {
        name: rt.name,
        listen: this.boundAddresses(rt.name),
        active: st.active,
        total: st.total,
        refused: { ...st.refused },
        bytes_in: st.bytesIn + (l?.in ?? 0),
        bytes_out: st.bytesOut + (l?.out ?? 0),
        failovers: st.failovers,
        no_backend: st.noBackend,
        connect_failed: st.connectFailed,
        persistence: { size: rt.table?.size ?? 0, hits: rt.router.stats.hits, misses: rt.router.stats.misses, evictions: rt.table?.evictions ?? 0 },
        ...storeStatus(this.persistence.store(rt.config)),
        backends: rt.backends.map((b) => backendStatus(b, liveBackend.get(b))),
      };
    });
    return { version: VERSION, uptime_s: Math.round((Date.now() - this.started) / 1000), frontends };
  }

  entries(frontend: string, key?: string): Lookup<PersistenceEntry[]> {
    const rt = this.runtimes.get(frontend);
    if (!rt) return { ok: false, error: `no frontend "${frontend}"` };
    if (key === undefined) return { ok: true, value: rt.table ? [...rt.table.entries()] : [] };
    const e = rt.table?.get(key);
    return e ? { ok: true, value: [e] } : { ok: false, error: `no entry for key "${key}" in frontend "${frontend}"` };
  }

  forget(frontend: string, which: { key?: string; backend?: string }): Lookup<number> {
    const rt = this.runtimes.get(frontend);
    if (!rt) return { ok: false, error: `no frontend "${frontend}"` };
    const t = rt.table;
    if (which.key !== undefined) {
      this.persistence.store(rt.config)?.delete(which.key);
      return t?.delete(which.key) ? { ok: true, value: 1 } : { ok: false, error: `no entry for key "${which.key}" in frontend "${frontend}"` };
    }
    if (which.backend !== undefined) {
      const name = which.backend;
      if (!rt.router.index.has(name)) return { ok: false, error: `no backend "${name}" in frontend "${frontend}"` };
      const store = this.persistence.store(rt.config);
      return { ok: true, value: t ? t.retain((b, key) => b !== name || (store?.delete(key), false)) : 0 };
    }
    const store = this.persistence.store(rt.config);
    if (store && t) for (const e of t.entries()) store.delete(e.key);
    return { ok: true, value: t ? t.clear() : 0 };
  }

  setMode(frontend: string, backend: string, action: AdminAction): Lookup<BackendStatus> {
    const rt = this.runtimes.get(frontend);
    if (!rt) return { ok: false, error: `no frontend "${frontend}"` };
    const i = rt.router.index.get(backend);
    if (i === undefined) return { ok: false, error: `no backend "${backend}" in frontend "${frontend}"` };
    const b = rt.backends[i]!;
    b.setMode(action === 'drain' ? 'draining' : action === 'disable' ? 'disabled' : 'normal');
    return { ok: true, value: backendStatus(b, undefined) };
  }

  /** Bound addresses of a frontend (the real port for :0). */
  boundAddresses(frontend: string): string[] {
    const out: string[] = [];
    for (const l of this.listeners.values()) {
      if (l.frontend !== frontend) continue;
      const h = l.address.host;
      out.push(h.includes(':') ? `[${h}]:${l.port}` : `${h}:${l.port}`);
    }
    return out;
  }

  // --- internals ----------------------------------------------------------

  private buildRuntimes(config: Config, prev?: ReadonlyMap<string, FrontendRuntime>): Map<string, FrontendRuntime> {
    if (!this.isWorker) this.persistence.apply(config);
    return new Map(
      config.frontends.map((fe) => {
        const rt = FrontendRuntime.build(
          fe,
          prev?.get(fe.name),
          this.log,
          this.dialer,
          (b, seconds, ok) => this.metrics?.checkDuration.observe({ frontend: fe.name, backend: b.name, result: ok ? 'pass' : 'fail' }, seconds),
          this.isWorker ? null : this.persistence.table(fe),
        );
        if (this.opts.remoteRoute) rt.route = this.opts.remoteRoute(fe.name);
        const store = this.isWorker ? null : this.persistence.store(fe);
        if (store && rt.table) {
          const { StoreRoute } = require('./store/redis.js') as typeof import('./store/redis.js');
          rt.route = new StoreRoute(rt.local, rt.table, store, (name) => {
            const i = rt.router.index.get(name);
            return i !== undefined && rt.view.keeps(i);
          });
        }
        return [fe.name, rt];
      }),
    );
  }

  private async bindAll(config: Config, existing: ReadonlyMap<string, Listener>): Promise<Map<string, Listener>> {
    const out = new Map<string, Listener>(existing);
    const fresh: Listener[] = [];
    try {
      for (const fe of config.frontends) {
        for (const a of fe.listen) {
          const k = listenKey(fe.name, a);
          if (out.has(k)) continue;
          const l = new Listener(a, fe.name, this);
          await l.listen();
          fresh.push(l);
          out.set(k, l);
          if (this.opts.onListening) this.opts.onListening(fe.name, a.host, l.port);
          else this.log.info({ frontend: fe.name, address: a.host, port: l.port }, 'listening');
        }
      }
    } catch (err) {
      await Promise.all(fresh.map((l) => l.close()));
      throw err;
    }
    return out;
  }

  private whenEmpty: (() => void) | null = null;
  private sweeper: NodeJS.Timeout | null = null;

  /**
   * Idle timeouts: one timer for every connection, ticking at a quarter of the shortest timeouts.idle
   * (between 50 ms and 1 s), instead of a timer per socket re-armed on every chunk. A pair closes between
   * idle and idle + 2 ticks after its last byte; never before.
   */
  private scheduleSweep(): void {
    if (this.opts.primary) return; // workers hold the connections
    const idle = Math.min(...this.config.frontends.map((fe) => fe.timeouts.idle).filter((ms) => ms > 0));
    const tick = Number.isFinite(idle) ? Math.min(1000, Math.max(50, Math.floor(idle / 4))) : 1000;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = setInterval(() => this.sweep(), tick);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const s of this.sessions) s.sweep(now);
  }

  sessionEnded(s: Session): void {
    this.sessions.delete(s);
    if (this.sessions.size === 0) this.whenEmpty?.();
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

function storeStatus(s: RedisStore | null): { store?: FrontendStatus['store'] } {
  return s ? { store: { url: s.url, up: s.up, errors: s.errors } } : {};
}

function backendStatus(b: BackendRuntime, live: { in: number; out: number } | undefined): BackendStatus {
  return {
    name: b.name,
    address: b.config.address.text,
    state: b.state,
    health: b.health,
    weight: b.config.weight,
    backup: b.config.backup,
    active: b.active,
    total: b.total,
    bytes_in: b.bytesIn + (live?.in ?? 0),
    bytes_out: b.bytesOut + (live?.out ?? 0),
    connect_failures: b.connectFailures,
  };
}

/** Port-0 addresses are per frontend; fixed ones are identified by address alone. */
function listenKey(frontend: string, a: { host: string; port: number }): string {
  return a.port === 0 ? `${frontend}|${a.host}:0` : `${a.host}:${a.port}`;
}
