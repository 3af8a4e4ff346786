/**
 * unknown → a frozen Config, or every error with its path. Never throws for
 * bad input and never exits: the caller decides what an error means.
 */
import type { ConfigIssue } from '../errors.js';
import { configSchema, type Config } from './schema.js';

export type ValidateResult = { ok: true; config: Config } | { ok: false; errors: ConfigIssue[] };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(root)' : out;
}

export function validate(input: unknown): ValidateResult {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const errors: ConfigIssue[] = duplicateNames(input);
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) errors.push({ path: formatPath([...issue.path, key]), message: 'unknown key' });
      } else {
        errors.push({ path: formatPath(issue.path), message: issue.message });
      }
    }
    return { ok: false, errors };
  }
  const raw = parsed.data;
  const errors: ConfigIssue[] = duplicateNames(input);
  const seenListen = new Map<string, string>();
  const frontends = raw.frontends.map((fe, i) => {
    const at = `frontends[${i}]`;
    fe.listen.forEach((a, j) => {
      const k = `${a.host}:${a.port}`;
      const other = seenListen.get(k);
      if (a.port !== 0 && other !== undefined) errors.push({ path: `${at}.listen[${j}]`, message: `address ${a.text} is already used by ${other}` });
      seenListen.set(k, `${at}.listen[${j}]`);
    });
    let algorithm = fe.balance.algorithm;
    if (fe.affinity.key === 'none' && algorithm === 'consistent_hash') {
      errors.push({ path: `${at}.balance.algorithm`, message: 'consistent_hash needs an affinity key; with affinity.key "none" use round_robin or least_conn' });
    }
    algorithm ??= fe.affinity.key === 'none' ? 'round_robin' : 'consistent_hash';
    if (fe.accept_proxy !== 'off' && fe.trusted_proxies.length === 0) {
      errors.push({ path: `${at}.trusted_proxies`, message: `must list the proxies allowed to send a PROXY header when accept_proxy is ${fe.accept_proxy}` });
    }
    return { ...fe, balance: { ...fe.balance, algorithm } };
  });
  errors.push(...sharedTables(frontends));
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config: deepFreeze({ ...raw, frontends }) as Config };
}

/** Duplicate frontend / backend names, read from the raw input so they are reported with the schema's errors. */
function duplicateNames(input: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const list = (v: unknown, key: string): unknown[] => {
    const x = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined;
    return Array.isArray(x) ? x : [];
  };
  const check = (items: unknown[], at: string, what: string) => {
    const seen = new Map<unknown, number>();
    items.forEach((item, i) => {
      const name = item !== null && typeof item === 'object' ? (item as Record<string, unknown>).name : undefined;
      if (typeof name !== 'string') return;
      const prev = seen.get(name);
      if (prev !== undefined) out.push({ path: `${at}[${i}].name`, message: `duplicate ${what} name "${name}" (also ${at}[${prev}])` });
      else seen.set(name, i);
    });
  };
  const frontends = list(input, 'frontends');
  check(frontends, 'frontends', 'frontend');
  frontends.forEach((fe, i) => check(list(fe, 'backends'), `frontends[${i}].backends`, 'backend'));
  return out;
}

/** Frontends sharing a table must agree on how it is kept. */
function sharedTables(frontends: readonly { name: string; affinity: { key: string }; persistence: Record<string, unknown> & { table: string | null } }[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const first = new Map<string, number>();
  const same = ['ttl', 'max_entries', 'snapshot', 'snapshot_interval', 'store'] as const;
  const snapshots = new Map<string, string>();
  frontends.forEach((fe, i) => {
    const p = fe.persistence;
    const tableId = p.table ?? `frontend:${fe.name}`;
    if (typeof p.snapshot === 'string') {
      const other = snapshots.get(p.snapshot);
      if (other !== undefined && other !== tableId) {
        out.push({ path: `frontends[${i}].persistence.snapshot`, message: `"${p.snapshot}" is also the snapshot of another table; each table needs its own file` });
      }
      snapshots.set(p.snapshot, tableId);
    }
    if (p.table === null) return;
    if (fe.affinity.key === 'none') out.push({ path: `frontends[${i}].persistence.table`, message: 'affinity.key "none" keeps no table to share' });
    const j = first.get(p.table);
    if (j === undefined) {
      first.set(p.table, i);
      return;
    }
    const q = frontends[j]!.persistence;
    for (const k of same) {
      if (JSON.stringify(p[k]) !== JSON.stringify(q[k])) {
        out.push({ path: `frontends[${i}].persistence.${k}`, message: `differs from frontends[${j}] (${frontends[j]!.name}), which shares table "${p.table}"` });
      }
    }
  });
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
