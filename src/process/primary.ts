/**
 * The primary of `workers: N`: forks the workers (node:cluster, each worker
 * accepting on the shared listening sockets itself), answers their routing
 * requests from the one persistence table, runs health checks and the
 * admin API, sums the workers' figures for /status and /metrics, and
 * carries reloads and stops to every worker.
 */
import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import type { FrontendStatus, PoolStatus, Status } from '../admin/control.js';
import { compile } from '../config/compile.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Lease } from '../placement/lease.js';
import { netDialer } from '../proxy/dialer.js';
import { ResourceWatch } from '../proxy/resources.js';
import { PersistenceSet } from '../store/persistence-set.js';
import { ownStatus, PoolControl, withPoolViews } from './control.js';
import { Runtimes } from './runtimes.js';
import { holdingDeps, startAdmin, warnAdminChange, type Admin } from './shared.js';
import type { Granted, ToPrimary, ToWorker } from './protocol.js';

export function workerCount(config: Config): number {
  return config.workers === 'auto' ? availableParallelism() : config.workers;
}

export class Primary {
  private readonly persistence: PersistenceSet;
  private readonly runtimes: Runtimes;
  private readonly control: PoolControl;
  private admin: Admin | null = null;
  private readonly workers = new Set<Worker>();
  private readonly listening = new Set<string>();
  private nextId = 1;
  private readonly statsWaiters = new Map<number, (s: Status | null) => void>();
  private gen = 0;
  private readonly applied = new Map<number, { left: Set<Worker>; errors: string[]; done: () => void }>();
  private stopping = false;

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly count: number,
  ) {
    this.persistence = new PersistenceSet(log);
    this.runtimes = new Runtimes(holdingDeps(log, netDialer, this.persistence, () => this.admin?.metrics ?? null, new ResourceWatch(log)));
    this.control = new PoolControl(this.runtimes, this.persistence, () => this.merge(ownStatus(this.runtimes, this.persistence, null, null)), () => !this.stopping);
  }

  /** Start the routing state and admin API, fork the workers and wait until every one serves. */
  async start(): Promise<void> {
    const plan = compile(this.config);
    this.persistence.apply(plan);
    this.runtimes.apply(plan);
    await this.persistence.load();
    this.admin = await startAdmin(this.config, this.control, this.log);
    this.runtimes.startChecks();
    this.persistence.schedule();
    cluster.schedulingPolicy = cluster.SCHED_NONE; // each worker accepts on the shared socket itself
    const ready = Array.from({ length: this.count }, () => this.fork());
    await Promise.all(ready);
    this.log.info({ workers: this.count }, 'workers ready');
  }

  private fork(): Promise<void> {
    const w = cluster.fork();
    this.workers.add(w);
    w.on('message', (m: ToPrimary) => this.onMessage(w, m));
    return new Promise((resolve, reject) => {
      let serving = false;
      const onApplied = (m: ToPrimary) => {
        if (m.t === 'applied' && m.gen === 0) {
          w.removeListener('message', onApplied);
          if (m.error) reject(new Error(m.error));
          else ((serving = true), resolve());
        }
      };
      w.on('message', onApplied);
      // Not on 'online': that comes before the worker's main module has run (an
      // --import in NODE_OPTIONS delays it), and a message sent earlier is lost.
      const onHello = (m: ToPrimary) => {
        if (m.t !== 'hello') return;
        w.removeListener('message', onHello);
        this.send(w, { t: 'config', gen: 0, config: this.config });
      };
      w.on('message', onHello);
      w.on('exit', (code, signal) => {
        this.workers.delete(w);
        this.release(w);
        for (const a of this.applied.values()) if (a.left.delete(w) && a.left.size === 0) a.done();
        if (!serving) return reject(new Error(`worker exited during start (code ${code})`));
        if (this.stopping) return;
        this.log.error({ worker: w.id, code, signal }, 'worker died; starting another');
        void this.fork().catch((err: Error) => this.log.error({ err: err.message }, 'could not restart worker'));
      });
    });
  }

  /** Each worker's open connections, as the leases the primary holds for them (by the worker's lease id). */
  private readonly held = new Map<Worker, Map<number, Lease>>();

  private leases(w: Worker): Map<number, Lease> {
    let h = this.held.get(w);
    if (!h) this.held.set(w, (h = new Map()));
    return h;
  }

  /** A worker died with connections open: give back their leases (backend counts and key pins). */
  private release(w: Worker): void {
    const h = this.held.get(w);
    this.held.delete(w);
    if (!h) return;
    for (const lease of h.values()) lease.release();
    if (h.size > 0) this.log.warn({ worker: w.id, connections: h.size }, 'released the connections of a dead worker');
  }

  private send(w: Worker, m: ToWorker): void {
    if (w.isConnected()) w.send(m, undefined, undefined, ignore); // a dead worker's 'exit' handles it
  }

  private readonly answers = new Map<Worker, Array<[number, Granted | null]>>();

  /** Answers go back one message per worker per event-loop turn. */
  private answer(w: Worker, id: number, lease: Lease | null): void {
    const g: Granted | null = lease === null ? null : { backend: lease.backend, via: lease.via };
    let a = this.answers.get(w);
    if (a) {
      a.push([id, g]);
      return;
    }
    this.answers.set(w, (a = [[id, g]]));
    setImmediate(() => {
      this.answers.delete(w);
      this.send(w, { t: 'r', a });
    });
  }

  private onMessage(w: Worker, m: ToPrimary): void {
    switch (m.t) {
      case 'b': {
        const h = this.leases(w);
        for (const op of m.ops) {
          switch (op[0]) {
            case 'a': {
              const [, id, pool, key] = op;
              const p = this.runtimes.pool(pool);
              if (!p) {
                this.answer(w, id, null);
                break;
              }
              void p.placement.acquire(key).then((lease) => {
                if (lease !== null) {
                  if (this.held.get(w) === h) h.set(id, lease);
                  else lease.release(); // the worker died meanwhile
                }
                this.answer(w, id, lease);
              });
              break;
            }
            case 'f': {
              const [, id, why] = op;
              const lease = h.get(id);
              if (!lease) {
                this.answer(w, id, null);
                break;
              }
              void lease.failed(why).then((next) => {
                if (next !== null && next !== lease) h.set(id, next);
                this.answer(w, id, next);
              });
              break;
            }
            case 'ok':
              h.get(op[1])?.connected();
              break;
            case 'x': {
              const lease = h.get(op[1]);
              h.delete(op[1]);
              lease?.release();
              break;
            }
          }
        }
        return;
      }
      case 'listening': {
        const k = `${m.fe}|${m.address}|${m.port}`;
        if (!this.listening.has(k)) {
          this.listening.add(k);
          this.bound.add(`${m.address}:${m.port}`);
          this.log.info({ frontend: m.fe, address: m.address, port: m.port }, 'listening');
        }
        return;
      }
      case 'stats':
        this.statsWaiters.get(m.id)?.(m.s);
        return;
      case 'applied': {
        const a = this.applied.get(m.gen);
        if (!a) return;
        if (m.error) a.errors.push(m.error);
        a.left.delete(w);
        if (a.left.size === 0) a.done();
        return;
      }
      case 'hello':
      case 'ready':
        return;
      default: {
        const never: never = m;
        throw new Error(`unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  /** host:port of every socket a worker reported bound (port 0 resolved). */
  private readonly bound = new Set<string>();

  /** Validated config: check new addresses bind, apply here, then in every worker. Throws on failure. */
  async reload(next: Config): Promise<void> {
    if (workerCount(next) !== this.count) this.log.warn({ running: this.count }, 'workers changed: takes effect at the next restart');
    await probeNewAddresses(this.config, next, this.bound);
    const plan = compile(next);
    this.persistence.apply(plan);
    this.runtimes.apply(plan);
    warnAdminChange(this.config, next, this.log);
    this.runtimes.startChecks();
    this.persistence.schedule();
    this.config = next;
    const gen = ++this.gen;
    const errors = await new Promise<string[]>((resolve) => {
      const entry = { left: new Set(this.workers), errors: [] as string[], done: () => (clearTimeout(timer), this.applied.delete(gen), resolve(entry.errors)) };
      const timer = setTimeout(() => entry.done(), 5000);
      this.applied.set(gen, entry);
      for (const w of this.workers) this.send(w, { t: 'config', gen, config: next });
      if (entry.left.size === 0) entry.done();
    });
    if (errors.length > 0) throw new Error(`workers: ${[...new Set(errors)].join('; ')}`);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const exited = [...this.workers].map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))));
    for (const w of this.workers) this.send(w, { t: 'stop' });
    const grace = this.config.shutdown_grace + 5000;
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, grace).unref())]);
    for (const w of this.workers) if (!w.isDead()) w.process.kill('SIGKILL');
    this.runtimes.stopChecks();
    this.runtimes.dispose();
    await this.persistence.close();
    await this.admin?.server.close();
  }

  /** The primary's own figures (pools, backend states, tables, open counts) plus the workers' (traffic). */
  private async merge(own: Status): Promise<Status> {
    const parts = await Promise.all([...this.workers].map((w) => this.statsOf(w)));
    const frontends = own.frontends.map((fe): FrontendStatus => {
      const out: FrontendStatus = { ...fe, refused: { ...fe.refused } };
      for (const p of parts) {
        const wf = p?.frontends.find((f) => f.name === fe.name);
        if (!wf) continue;
        if (out.listen.length === 0) out.listen = wf.listen;
        out.active += wf.active;
        out.total += wf.total;
        for (const [k, v] of Object.entries(wf.refused)) out.refused[k] = (out.refused[k] ?? 0) + v;
        out.bytes_in += wf.bytes_in;
        out.bytes_out += wf.bytes_out;
        out.failovers += wf.failovers;
        out.no_backend += wf.no_backend;
        out.connect_failed += wf.connect_failed;
        out.accept_errors += wf.accept_errors;
      }
      return out;
    });
    const pools = own.pools.map((pool): PoolStatus => {
      const out: PoolStatus = { ...pool, backends: pool.backends.map((b) => ({ ...b, total: 0, bytes_in: 0, bytes_out: 0 })) };
      for (const p of parts) {
        const wp = p?.pools.find((x) => x.name === pool.name);
        if (!wp) continue;
        for (const b of out.backends) {
          const wb = wp.backends.find((x) => x.name === b.name);
          if (!wb) continue;
          b.total += wb.total;
          b.bytes_in += wb.bytes_in;
          b.bytes_out += wb.bytes_out;
        }
      }
      return out;
    });
    const fd_exhaustion_episodes = parts.reduce((n, p) => n + (p?.fd_exhaustion_episodes ?? 0), own.fd_exhaustion_episodes);
    return withPoolViews({ ...own, frontends, pools, fd_exhaustion_episodes });
  }

  private statsOf(w: Worker): Promise<Status | null> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(null), 1000);
      const finish = (s: Status | null) => {
        clearTimeout(timer);
        this.statsWaiters.delete(id);
        resolve(s);
      };
      this.statsWaiters.set(id, finish);
      this.send(w, { t: 'stats?', id });
    });
  }
}

/** Listen addresses the next config adds must be bindable now (port 0 always is). */
async function probeNewAddresses(current: Config, next: Config, bound: ReadonlySet<string>): Promise<void> {
  const have = new Set([...bound, ...current.frontends.flatMap((f) => f.listen.map((a) => `${a.host}:${a.port}`))]);
  for (const fe of next.frontends) {
    for (const a of fe.listen) {
      if (a.port === 0 || have.has(`${a.host}:${a.port}`)) continue;
      await new Promise<void>((resolve, reject) => {
        const s = createServer();
        s.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${a.text}: ${err.code ?? err.message}`)));
        s.listen({ host: a.host, port: a.port, exclusive: true }, () => s.close(() => resolve()));
      });
    }
  }
}

function ignore(): void {}

