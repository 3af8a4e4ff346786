/**
 * Everything that keeps persistence beyond one connection, for one config:
 * the tables (one per pool or per shared `table` name), their Redis
 * stores, and their snapshot files (loaded at start, written every
 * snapshot_interval and at stop). The process root asks it for a pool's
 * table and store; it knows nothing of sockets.
 */
import type { Plan, PoolPlan } from '../config/compile.js';
import type { Logger } from '../log.js';
import type { LocalTable } from '../routing/persistence.js';
import { buildTables } from '../routing/tables.js';
import type { RedisStore } from './redis.js';
import { loadSnapshot, saveSnapshot } from './snapshot.js';

export class PersistenceSet {
  private tables = new Map<string, LocalTable>();
  private stores = new Map<string, RedisStore>();
  private plan: Plan | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readonly writing = new Map<string, Promise<void>>();

  constructor(private readonly log: Logger) {}

  table(p: PoolPlan): LocalTable | null {
    return p.tableId === null ? null : (this.tables.get(p.tableId) ?? null);
  }

  store(p: PoolPlan): RedisStore | null {
    return p.tableId === null ? null : (this.stores.get(p.tableId) ?? null);
  }

  /** Build (or carry over) the tables and stores of `plan`. */
  apply(plan: Plan): void {
    this.plan = plan;
    this.tables = buildTables(plan.pools.values(), this.tables);
    this.buildStores(plan);
  }

  /** Load every table's snapshot file; a missing or bad file leaves the table empty (logged). */
  async load(): Promise<void> {
    const plan = this.plan;
    if (!plan) return;
    for (const [id, { path }] of this.snapshotTargets()) {
      const names = new Set([...plan.pools.values()].filter((p) => p.tableId === id).flatMap((p) => p.backends.map((b) => b.name)));
      const r = await loadSnapshot(path, this.tables.get(id)!, (b) => names.has(b));
      if (r.ok) this.log.info({ table: id, path, loaded: r.loaded, skipped: r.skipped }, 'snapshot loaded');
      else if (r.missing) this.log.info({ table: id, path }, 'no snapshot yet: starting with an empty table');
      else this.log.warn({ table: id, path, reason: r.reason }, 'snapshot ignored: starting with an empty table');
    }
  }

  /** (Re)start the periodic snapshot writes of the current config. */
  schedule(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const [id, { path, interval }] of this.snapshotTargets()) {
      const t = setInterval(() => void this.write(id, path), interval);
      t.unref();
      this.timers.push(t);
    }
  }

  /** At stop: a last snapshot of every table, then close the stores. */
  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all([...this.snapshotTargets()].map(([id, { path }]) => this.write(id, path)));
    await Promise.all([...this.stores.values()].map((s) => s.close()));
  }

  /** Tables with a snapshot file: id → path and interval. */
  private snapshotTargets(): Map<string, { path: string; interval: number }> {
    const out = new Map<string, { path: string; interval: number }>();
    for (const pool of this.plan?.pools.values() ?? []) {
      const p = pool.config.persistence;
      if (p.snapshot !== null && pool.tableId !== null && this.tables.has(pool.tableId)) out.set(pool.tableId, { path: p.snapshot, interval: p.snapshot_interval });
    }
    return out;
  }

  /** One write at a time per table; errors are logged, never fatal. */
  private write(id: string, path: string): Promise<void> {
    const table = this.tables.get(id);
    if (!table) return Promise.resolve();
    const next = (this.writing.get(id) ?? Promise.resolve()).then(async () => {
      try {
        const n = await saveSnapshot(path, table);
        if (this.log.isLevelEnabled('debug')) this.log.debug({ table: id, path, entries: n }, 'snapshot written');
      } catch (err) {
        this.log.error({ table: id, path, err: (err as Error).message }, 'snapshot write failed');
      }
    });
    this.writing.set(id, next);
    return next;
  }

  /** One Redis connection pair per table with a `store`; kept across reloads while url and ttl stay. */
  private buildStores(plan: Plan): void {
    const next = new Map<string, RedisStore>();
    for (const pool of plan.pools.values()) {
      const id = pool.tableId;
      const url = pool.config.persistence.store;
      if (url === null || id === null || !this.tables.has(id) || next.has(id)) continue;
      const old = this.stores.get(id);
      if (old && old.url === url && old.ttlMs === pool.config.persistence.ttl) {
        next.set(id, old);
        continue;
      }
      const { RedisStore } = require('./redis.js') as typeof import('./redis.js'); // ioredis only when used
      const store = new RedisStore(url, id, pool.config.persistence.ttl, this.log);
      store.onChange((key, backend) => {
        const t = this.tables.get(id);
        if (!t) return;
        if (backend === null) t.delete(key);
        else t.assign(key, backend);
      });
      next.set(id, store);
    }
    for (const [id, s] of this.stores) if (next.get(id) !== s) void s.close();
    this.stores = next;
  }
}
