/**
 * The composition root: Config → frontend runtimes and listeners. A reload
 * builds new runtimes and swaps them in; a stop closes listeners and lets
 * open connections finish for up to shutdown_grace.
 */
import type { Config } from './config/schema.js';
import type { Logger } from './log.js';
import { netDialer, type Dialer } from './proxy/dialer.js';
import { Listener, type SessionHost } from './proxy/listener.js';
import type { Session } from './proxy/session.js';
import { FrontendRuntime } from './runtime.js';

export class App implements SessionHost {
  readonly sessions = new Set<Session>();
  private runtimes = new Map<string, FrontendRuntime>();
  /** Keyed by listenKey(). */
  private listeners = new Map<string, Listener>();
  private stopping: Promise<void> | null = null;

  constructor(
    private config: Config,
    readonly log: Logger,
    readonly dialer: Dialer = netDialer,
  ) {}

  runtime(frontend: string): FrontendRuntime | undefined {
    return this.stopping ? undefined : this.runtimes.get(frontend);
  }

  get frontends(): readonly FrontendRuntime[] {
    return [...this.runtimes.values()];
  }

  get currentConfig(): Config {
    return this.config;
  }

  /** Bind every listen address; throws BindError (nothing left bound) if one fails. */
  async start(): Promise<void> {
    this.runtimes = this.buildRuntimes(this.config);
    const bound = await this.bindAll(this.config, new Map());
    this.listeners = bound;
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
    const bound = await this.bindAll(next, keep);
    const runtimes = this.buildRuntimes(next, this.runtimes);
    for (const [k, l] of this.listeners) if (!bound.has(k)) void l.close();
    for (const [name, rt] of this.runtimes) if (!runtimes.has(name)) for (const b of rt.backends) b.dispose();
    for (const fe of next.frontends) for (const a of fe.listen) bound.get(listenKey(fe.name, a))!.frontend = fe.name;
    this.listeners = bound;
    this.runtimes = runtimes;
    this.config = next;
  }

  /** Stop accepting, wait for open connections up to shutdown_grace, then close the rest. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all([...this.listeners.values()].map((l) => l.close()));
      if (this.sessions.size > 0) {
        this.log.info({ open: this.sessions.size, grace_ms: this.config.shutdown_grace }, 'waiting for open connections');
        await this.drained(this.config.shutdown_grace);
        for (const s of [...this.sessions]) s.abort('shutdown');
      }
      for (const rt of this.runtimes.values()) for (const b of rt.backends) b.dispose();
    })();
    return this.stopping;
  }

  /** Bound ports, for /status and tests. */
  boundAddresses(frontend: string): string[] {
    const out: string[] = [];
    for (const l of this.listeners.values()) {
      if (l.frontend !== frontend) continue;
      const h = l.address.host;
      out.push(h.includes(':') ? `[${h}]:${l.port}` : `${h}:${l.port}`);
    }
    return out;
  }

  private buildRuntimes(config: Config, prev?: ReadonlyMap<string, FrontendRuntime>): Map<string, FrontendRuntime> {
    return new Map(config.frontends.map((fe) => [fe.name, FrontendRuntime.build(fe, prev?.get(fe.name), this.log)]));
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
          this.log.info({ frontend: fe.name, address: a.host, port: l.port }, 'listening');
        }
      }
    } catch (err) {
      await Promise.all(fresh.map((l) => l.close()));
      throw err;
    }
    return out;
  }

  private drained(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(finish, graceMs);
      const poll = setInterval(() => this.sessions.size === 0 && finish(), 50);
      function finish() {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      }
    });
  }
}

/** Port-0 addresses are per frontend; fixed ones are identified by address alone. */
function listenKey(frontend: string, a: { host: string; port: number }): string {
  return a.port === 0 ? `${frontend}|${a.host}:0` : `${a.host}:${a.port}`;
}
