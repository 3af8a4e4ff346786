/**
 * Everything that keeps persistence beyond one connection, for one config:
 * the tables (one per frontend or per shared `table` name), their Redis
 * stores, and their snapshot files (loaded at start, written every
 * snapshot_interval and at stop). The App asks it for a frontend's table
 * and store; it knows nothing of sockets.
 */
import type { Config, FrontendConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { LocalTable } from '../routing/persistence.js';
import { buildTables, tableId } from '../routing/tables.js';
import type { RedisStore } from './redis.js';
import { loadSnapshot, saveSnapshot } from './snapshot.js';

export class PersistenceSet {
  private tables = new Map<string, LocalTable>();
  private stores = new Map<string, RedisStore>();
  private config: Config | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readonly writing = new Map<string, Promise<void>>();

  constructor(private readonly log: Logger) {}

  table(fe: FrontendConfig): LocalTable | null {
    return this.tables.get(tableId(fe)) ?? null;
  }

  store(fe: FrontendConfig): RedisStore | null {
    return this.stores.get(tableId(fe)) ?? null;
  }

  /** Build (or carry over) the tables and stores of `config`. */
  apply(config: Config): void {
    this.config = config;
    this.tables = buildTables(config.frontends, this.tables);
    this.buildStores(config);
  }

  /** Load every table's snapshot file; a missing or bad file leaves the table empty (logged). */
  async load(): Promise<void> {
    const config = this.config;
    if (!config) return;
    for (const [id, { path }] of this.snapshotTargets()) {
      const names = new Set(config.frontends.filter((f) => tableId(f) === id).flatMap((f) => f.backends.map((b) => b.name)));
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
    for (const fe of this.config?.frontends ?? []) {
      const p = fe.persistence;
      if (p.snapshot !== null && this.tables.has(tableId(fe))) out.set(tableId(fe), { path: p.snapshot, interval: p.snapshot_interval });
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
  private buildStores(config: Config): void {
    const next = new Map<string, RedisStore>();
    for (const fe of config.frontends) {
      const id = tableId(fe);
      const url = fe.persistence.store;
      if (url === null || !this.tables.has(id) || next.has(id)) continue;
      const old = this.stores.get(id);
      if (old && old.url === url && old.ttlMs === fe.persistence.ttl) {
        next.set(id, old);
        continue;
      }
      const { RedisStore } = require('./redis.js') as typeof import('./redis.js'); // ioredis only when used
      const store = new RedisStore(url, id, fe.persistence.ttl, this.log);
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
