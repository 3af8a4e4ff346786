/**
 * The persistence tables of a config: one per pool, or one per
 * `persistence.table` name shared by the pools that name it. A reload
 * keeps a table (and its entries) when its size and ttl are unchanged, else
 * moves its entries over with their remaining ttl; entries whose backend
 * left every pool of the table are dropped.
 */
import type { PoolPlan } from '../config/compile.js';
import { LocalTable } from './persistence.js';

export function buildTables(pools: Iterable<PoolPlan>, prev: ReadonlyMap<string, LocalTable>): Map<string, LocalTable> {
  const out = new Map<string, LocalTable>();
  const names = new Map<string, Set<string>>();
  for (const p of pools) {
    const id = p.tableId;
    if (id === null) continue;
    const set = names.get(id) ?? new Set<string>();
    for (const b of p.backends) set.add(b.name);
    names.set(id, set);
    if (out.has(id)) continue;
    const { ttl, max_entries } = p.config.persistence;
    const old = prev.get(id);
    if (old && old.ttlMs === ttl && old.maxEntries === max_entries) {
      out.set(id, old);
      continue;
    }
    const t = new LocalTable(ttl, max_entries);
    if (old) {
      const now = Date.now();
      for (const e of old.entries()) t.restore(e.key, e.backend, e.expiresAt === null ? ttl : e.expiresAt - now);
    }
    out.set(id, t);
  }
  for (const [id, t] of out) {
    const keep = names.get(id)!;
    t.retain((b) => keep.has(b));
  }
  return out;
}
