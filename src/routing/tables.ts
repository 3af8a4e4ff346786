/**
 * The persistence tables of a config: one per frontend, or one per
 * `persistence.table` name shared by the frontends that name it. A reload
 * keeps a table (and its entries) when its size and ttl are unchanged, else
 * moves its entries over with their remaining ttl; entries whose backend
 * left every frontend of the table are dropped.
 */
import type { FrontendConfig } from '../config/schema.js';
import { LocalTable } from './persistence.js';

export function tableId(fe: FrontendConfig): string {
  return fe.persistence.table !== null ? `table:${fe.persistence.table}` : `frontend:${fe.name}`;
}

export function buildTables(frontends: readonly FrontendConfig[], prev: ReadonlyMap<string, LocalTable>): Map<string, LocalTable> {
  const out = new Map<string, LocalTable>();
  const names = new Map<string, Set<string>>();
  for (const fe of frontends) {
    if (fe.affinity.key === 'none') continue;
    const id = tableId(fe);
    const set = names.get(id) ?? new Set<string>();
    for (const b of fe.backends) set.add(b.name);
    names.set(id, set);
    if (out.has(id)) continue;
    const { ttl, max_entries } = fe.persistence;
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
