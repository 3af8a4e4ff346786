/**
 * `l4lb explain`: where a client would go, and why, computed by the same
 * route matcher, key function and Router as live traffic, with every
 * backend up and an empty table.
 */
import { compile, type FrontendPlan, type Plan, type PoolPlan } from '../config/compile.js';
import type { Config } from '../config/schema.js';
import { canonicalIp } from '../routing/affinity.js';
import type { BackendView } from '../routing/balancer.js';
import { ConsistentHash } from '../routing/balancer.js';
import { affinityKey, type KeySource } from '../routing/keys.js';
import { Router } from '../routing/router.js';
import type { Protocol } from '../routing/sniff.js';
import { L4lbError } from '../errors.js';

export interface ClientExplanation {
  frontend: string;
  /** The route taken (its name, else its index); null for a frontend without routes. */
  route: string | null;
  pool: string | null;
  client: string;
  key: string | null;
  key_source: KeySource;
  hash: number | null;
  point: number | null;
  point_hash: number | null;
  backend: string | null;
  address: string | null;
  via: string;
}

export interface ClientQuestion {
  readonly client: string;
  readonly sni?: string;
  readonly alpn?: readonly string[];
  readonly port?: number;
  /** The sniffed protocol; default: tls with an SNI or ALPN, else other. */
  readonly protocol?: Protocol;
}

export function pickFrontend(plan: Plan, name?: string): FrontendPlan {
  if (name === undefined) return plan.frontends[0]!;
  const fe = plan.frontends.find((f) => f.name === name);
  if (!fe) throw new L4lbError('L4LB_ERR_ARGS', `--frontend: no frontend named "${name}" (have: ${plan.frontends.map((f) => f.name).join(', ')})`);
  return fe;
}

/** `--pool P`, else the pool of `--frontend` (or of the first frontend) when it has exactly one. */
export function pickPool(plan: Plan, pool?: string, frontend?: string): PoolPlan {
  if (pool !== undefined) {
    const p = plan.pools.get(pool);
    if (!p) throw new L4lbError('L4LB_ERR_ARGS', `--pool: no pool named "${pool}" (have: ${[...plan.pools.keys()].join(', ')})`);
    return p;
  }
  const fe = pickFrontend(plan, frontend);
  if (fe.pool === null) throw new L4lbError('L4LB_ERR_ARGS', `--pool: frontend "${fe.name}" routes to several pools (${fe.pools.join(', ')}); name one`);
  return plan.pools.get(fe.pool)!;
}

const allUp = (p: PoolPlan): BackendView => ({
  acceptsNew: (i) => p.backends[i]!.weight > 0,
  keeps: () => true,
  hasRoom: () => true,
  active: () => 0,
});

export function explainClient(config: Config, q: ClientQuestion, frontend?: string): ClientExplanation {
  const plan = compile(config);
  const fe = pickFrontend(plan, frontend);
  let ip: string;
  try {
    ip = canonicalIp(q.client);
  } catch {
    throw new L4lbError('L4LB_ERR_ARGS', `--client: "${q.client}" is not an IP address`);
  }
  const sni = q.sni ?? null;
  let poolName = fe.pool;
  let route: string | null = null;
  if (fe.routes !== null) {
    const m = fe.routes.match({
      sni,
      alpn: q.alpn ?? [],
      source: ip,
      protocol: q.protocol ?? (sni !== null || (q.alpn?.length ?? 0) > 0 ? 'tls' : 'other'),
      destinationPort: q.port ?? fe.config.listen[0]!.port,
    });
    poolName = m?.pool ?? null;
    route = m?.label ?? null;
  }
  const empty = { frontend: fe.name, route, pool: poolName, client: ip, hash: null, point: null, point_hash: null, address: null, backend: null };
  if (poolName === null) return { ...empty, key: null, key_source: 'socket', via: 'no_route' };
  const pool = plan.pools.get(poolName)!;
  const { key, source } = affinityKey(pool.key, { client: ip, viaProxy: false, sni });
  const c = pool.config;
  const router = new Router(pool.backends, c.balance.algorithm, c.balance.vnodes, { boundedLoad: c.balance.bounded_load, onRecovery: c.persistence.on_recovery });
  const hash = key === null ? null : router.hash(key);
  const d = router.decide(key, hash ?? 0, null, allUp(pool));
  const b = d ? pool.backends[d.backend]! : null;
  let pointHash: number | null = null;
  if (d && d.point >= 0 && router.balancer instanceof ConsistentHash) {
    const ring = b!.backup ? router.balancer.backup : router.balancer.primary;
    pointHash = ring.hashes[d.point]!;
  }
  return {
    ...empty,
    key,
    key_source: source,
    hash,
    point: d && d.point >= 0 ? d.point : null,
    point_hash: pointHash,
    backend: b?.name ?? null,
    address: b?.address.text ?? null,
    via: c.balance.algorithm,
  };
}

export interface RingExplanation {
  /** The pool's name (for a §3 frontend, the frontend's). */
  frontend: string;
  pool: string;
  points: number;
  backends: { name: string; weight: number; backup: boolean; points: number; share: number }[];
}

export function explainRing(config: Config, pool?: string, frontend?: string): RingExplanation {
  const p = pickPool(compile(config), pool, frontend);
  const ch = new ConsistentHash(p.backends, p.config.balance.vnodes);
  const shares = ch.primary.shares();
  const points = new Array<number>(p.backends.length).fill(0);
  for (const o of ch.primary.owners) points[o]!++;
  return {
    frontend: p.implicitOf ?? p.name,
    pool: p.name,
    points: ch.primary.size,
    backends: p.backends.map((b, i) => ({ name: b.name, weight: b.weight, backup: b.backup, points: points[i]!, share: shares[i]! })),
  };
}

export function formatClient(e: ClientExplanation): string {
  const hex = (n: number | null) => (n === null ? '-' : `0x${n.toString(16).padStart(8, '0')}`);
  const lines = [`frontend  ${e.frontend}`];
  if (e.route !== null || e.pool !== e.frontend) lines.push(`route     ${e.route ?? '(none matches)'}`, `pool      ${e.pool ?? '-'}`);
  if (e.pool === null) {
    lines.push(`client    ${e.client}`, 'backend   none: no route matches, the connection is refused (no_route)');
    return lines.join('\n');
  }
  lines.push(`client    ${e.client}`, `key       ${e.key ?? '(none: no persistence)'}  [${e.key_source}]`);
  if (e.hash !== null) lines.push(`hash      ${hex(e.hash)}`);
  if (e.point !== null) lines.push(`ring      point #${e.point} at ${hex(e.point_hash)}, the first clockwise from the hash`);
  lines.push(e.backend ? `backend   ${e.backend} (${e.address}) by ${e.via}` : 'backend   none eligible');
  if (e.via !== 'consistent_hash') lines.push(`note      ${e.via} is not deterministic: this is only the first pick of a fresh process`);
  lines.push('note      with every backend up and an empty persistence table; a live entry (GET /persistence) wins over this');
  return lines.join('\n');
}

export function formatRing(r: RingExplanation): string {
  const w = Math.max(7, ...r.backends.map((b) => b.name.length));
  const head = `${'backend'.padEnd(w)}  weight  points   share`;
  const rows = r.backends.map(
    (b) => `${b.name.padEnd(w)}  ${String(b.weight).padStart(6)}  ${String(b.points).padStart(6)}  ${(b.share * 100).toFixed(3).padStart(6)}%${b.backup ? '  (backup: separate ring)' : ''}`,
  );
  const live = r.backends.filter((b) => !b.backup && b.weight > 0);
  const fair = live.reduce((s, b) => s + b.weight, 0);
  const worst = Math.max(...live.map((b) => b.share / (b.weight / fair)));
  const title = r.pool === r.frontend ? `frontend ${r.frontend}` : `pool ${r.pool}`;
  return [`${title}: ${r.points} ring points`, head, ...rows, `max share / fair share: ${worst.toFixed(4)}`].join('\n');
}
