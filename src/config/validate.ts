/**
 * unknown → a frozen Config, or every error with its path. Never throws for
 * bad input and never exits: the caller decides what an error means.
 *
 * Pools (SPEC §9): every frontend reaches pools, either one (`pool:`), several
 * (`routes:`), or its own (`backends:`, the §3 form, an implicit pool named
 * after the frontend). Config.pools lists them all, explicit first.
 */
import type { ConfigIssue } from '../errors.js';
import { configSchema, PLACEMENT_KEYS, type Algorithm, type Config, type FrontendConfig, type PoolConfig } from './schema.js';

export type ValidateResult = { ok: true; config: Config } | { ok: false; errors: ConfigIssue[] };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(root)' : out;
}

type Raw = Record<string, unknown>;
const obj = (v: unknown): Raw | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Raw) : null);
const list = (v: unknown, key: string): unknown[] => {
  const x = obj(v)?.[key];
  return Array.isArray(x) ? x : [];
};

export function validate(input: unknown): ValidateResult {
  const parsed = configSchema.safeParse(input);
  const errors: ConfigIssue[] = [...duplicateNames(input), ...shapeOfTargets(input)];
  if (!parsed.success) {
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
  const seenListen = new Map<string, string>();
  const explicit = new Map<string, number>(raw.pools.map((p, i) => [p.name, i]));
  const pools: PoolConfig[] = raw.pools.map((p, i) => ({ ...p, balance: resolveAlgorithm(p, `pools[${i}]`, errors), implicitOf: null, at: `pools[${i}]` }));
  const frontends = raw.frontends.map((fe, i): FrontendConfig => {
    const at = `frontends[${i}]`;
    fe.listen.forEach((a, j) => {
      const k = `${a.host}:${a.port}`;
      const other = seenListen.get(k);
      if (a.port !== 0 && other !== undefined) errors.push({ path: `${at}.listen[${j}]`, message: `address ${a.text} is already used by ${other}` });
      seenListen.set(k, `${at}.listen[${j}]`);
    });
    if (fe.accept_proxy !== 'off' && fe.trusted_proxies.length === 0) {
      errors.push({ path: `${at}.trusted_proxies`, message: `must list the proxies allowed to send a PROXY header when accept_proxy is ${fe.accept_proxy}` });
    }
    const balance = resolveAlgorithm(fe, at, errors);
    const { pool, routes, ...rest } = fe;
    if (fe.backends !== undefined) {
      if (explicit.has(fe.name)) {
        errors.push({ path: `${at}.name`, message: `"${fe.name}" is also the name of pools[${explicit.get(fe.name)}]; a frontend with its own backends has an implicit pool of its name` });
      }
      pools.push({
        name: fe.name,
        affinity: fe.affinity,
        persistence: fe.persistence,
        balance,
        retries: fe.retries,
        passive: fe.passive,
        send_proxy: fe.send_proxy,
        health_check: fe.health_check,
        timeouts: { connect: fe.timeouts.connect, idle: fe.timeouts.idle },
        backends: fe.backends,
        implicitOf: fe.name,
        at,
      });
      return { ...rest, balance, pool: fe.name, routes: null };
    }
    return { ...rest, balance, pool: pool ?? null, routes: routes ?? null };
  });
  const implicit = new Map(pools.filter((p) => p.implicitOf !== null).map((p) => [p.name, p.at]));
  frontends.forEach((fe, i) => {
    const at = `frontends[${i}]`;
    const target = (name: string, path: string) => {
      if (explicit.has(name)) return;
      const imp = implicit.get(name);
      if (imp !== undefined && imp !== at) errors.push({ path, message: `"${name}" is the implicit pool of ${imp} (${name}); move its backends to pools: to share it` });
      else if (imp === undefined) errors.push({ path, message: `no pool named "${name}"${known(explicit)}` });
    };
    if (fe.routes === null) {
      if (fe.pool !== null && implicit.get(fe.name) !== at) target(fe.pool, `${at}.pool`);
      return;
    }
    fe.routes.forEach((r, j) => {
      target(r.pool, `${at}.routes[${j}].pool`);
      if (r.match === undefined && j !== fe.routes!.length - 1) {
        errors.push({ path: `${at}.routes[${j}]`, message: 'a route without match is the default and must be last' });
      }
      if (r.match !== undefined && Object.keys(r.match).length === 0) {
        errors.push({ path: `${at}.routes[${j}].match`, message: 'give at least one condition (a route without match is the default)' });
      }
    });
    const names = new Map<string, number>();
    fe.routes.forEach((r, j) => {
      if (r.name === undefined) return;
      const prev = names.get(r.name);
      if (prev !== undefined) errors.push({ path: `${at}.routes[${j}].name`, message: `duplicate route name "${r.name}" (also ${at}.routes[${prev}])` });
      else names.set(r.name, j);
    });
  });
  errors.push(...sharedTables(pools));
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config: deepFreeze({ ...raw, frontends, pools }) as Config };
}

function known(names: ReadonlyMap<string, number>): string {
  return names.size === 0 ? ' (there is no pools: section)' : ` (pools: ${[...names.keys()].join(', ')})`;
}

function resolveAlgorithm(
  p: { affinity: { key: string }; balance: { algorithm?: Algorithm; vnodes: number; bounded_load: number | null } },
  at: string,
  errors: ConfigIssue[],
): PoolConfig['balance'] {
  let algorithm = p.balance.algorithm;
  if (p.affinity.key === 'none' && algorithm === 'consistent_hash') {
    errors.push({ path: `${at}.balance.algorithm`, message: 'consistent_hash needs an affinity key; with affinity.key "none" use round_robin or least_conn' });
  }
  algorithm ??= p.affinity.key === 'none' ? 'round_robin' : 'consistent_hash';
  return { ...p.balance, algorithm };
}

/**
 * Each frontend names exactly one of `backends`, `pool` and `routes`; with `pool` or `routes`, placement
 * settings belong to the pool. Read from the raw input, so they are reported with the schema's errors.
 */
function shapeOfTargets(input: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  list(input, 'frontends').forEach((v, i) => {
    const fe = obj(v);
    if (!fe) return;
    const at = `frontends[${i}]`;
    const given = (['backends', 'pool', 'routes'] as const).filter((k) => fe[k] !== undefined);
    if (given.length === 0) {
      out.push({ path: `${at}.backends`, message: 'required: give backends (its own pool), pool (a pool by name) or routes' });
      return;
    }
    if (given.length > 1) {
      out.push({ path: `${at}.${given[1]}`, message: `give one of backends, pool and routes (this frontend also has ${given[0]})` });
      return;
    }
    if (given[0] === 'backends') return;
    const where = given[0] === 'pool' && typeof fe.pool === 'string' ? `pool "${fe.pool}"` : 'the pools its routes name';
    for (const k of PLACEMENT_KEYS) {
      if (k !== 'backends' && fe[k] !== undefined) out.push({ path: `${at}.${k}`, message: `belongs to the pool: set it on ${where}` });
    }
    const t = obj(fe.timeouts);
    for (const k of ['connect', 'idle'] as const) {
      if (t?.[k] !== undefined) out.push({ path: `${at}.timeouts.${k}`, message: `belongs to the pool: set it on ${where}` });
    }
  });
  return out;
}

/** Duplicate frontend / pool / backend names, read from the raw input so they are reported with the schema's errors. */
function duplicateNames(input: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const check = (items: unknown[], at: string, what: string) => {
    const seen = new Map<unknown, number>();
    items.forEach((item, i) => {
      const name = obj(item)?.name;
      if (typeof name !== 'string') return;
      const prev = seen.get(name);
      if (prev !== undefined) out.push({ path: `${at}[${i}].name`, message: `duplicate ${what} name "${name}" (also ${at}[${prev}])` });
      else seen.set(name, i);
    });
  };
  const frontends = list(input, 'frontends');
  check(frontends, 'frontends', 'frontend');
  frontends.forEach((fe, i) => check(list(fe, 'backends'), `frontends[${i}].backends`, 'backend'));
  const pools = list(input, 'pools');
  check(pools, 'pools', 'pool');
  pools.forEach((p, i) => check(list(p, 'backends'), `pools[${i}].backends`, 'backend'));
  return out;
}

/** Pools sharing a table must agree on how it is kept. */
function sharedTables(pools: readonly PoolConfig[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const first = new Map<string, PoolConfig>();
  const same = ['ttl', 'max_entries', 'snapshot', 'snapshot_interval', 'store'] as const;
  const snapshots = new Map<string, string>();
  for (const p of pools) {
    const ps = p.persistence;
    const id = ps.table ?? `pool:${p.name}`;
    if (typeof ps.snapshot === 'string') {
      const other = snapshots.get(ps.snapshot);
      if (other !== undefined && other !== id) {
        out.push({ path: `${p.at}.persistence.snapshot`, message: `"${ps.snapshot}" is also the snapshot of another table; each table needs its own file` });
      }
      snapshots.set(ps.snapshot, id);
    }
    if (ps.table === null) continue;
    if (p.affinity.key === 'none') out.push({ path: `${p.at}.persistence.table`, message: 'affinity.key "none" keeps no table to share' });
    const q = first.get(ps.table);
    if (q === undefined) {
      first.set(ps.table, p);
      continue;
    }
    for (const k of same) {
      if (JSON.stringify(ps[k]) !== JSON.stringify(q.persistence[k])) {
        out.push({ path: `${p.at}.persistence.${k}`, message: `differs from ${q.at} (${q.name}), which shares table "${ps.table}"` });
      }
    }
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
