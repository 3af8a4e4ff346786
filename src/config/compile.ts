/**
 * Config → plans, once per load or reload (caddy-l4's Provision/Compile):
 * what each frontend checks and peeks before placement, and what each pool
 * places with. Proxy code reads plans, never raw config, and resolves no
 * default of its own.
 */
import type { Address, Config, FrontendConfig, PoolConfig, ProxyVersion, RouteConfig } from './schema.js';
import { Admission, AddressMatcher } from '../routing/admission.js';
import { needsHello, type KeyPlan } from '../routing/keys.js';
import { RouteTable, type RouteSpec } from '../routing/routes.js';

export interface BackendPlan {
  readonly name: string;
  readonly address: Address;
  readonly weight: number;
  readonly backup: boolean;
  /** The backend's own send_proxy, else its pool's. */
  readonly sendProxy: ProxyVersion;
  /** 0 = unlimited. */
  readonly maxConnections: number;
}

export interface PoolPlan {
  readonly name: string;
  readonly config: PoolConfig;
  /** The frontend of a §3-form pool, else null. */
  readonly implicitOf: string | null;
  /** Which table keeps its entries (shared by `persistence.table`); null with affinity.key none. */
  readonly tableId: string | null;
  readonly key: KeyPlan;
  readonly backends: readonly BackendPlan[];
  readonly connectMs: number;
  /** 0 = no idle timeout. */
  readonly idleMs: number;
  readonly retries: number;
}

/** What a frontend reads from the client before it can choose a pool and a key. */
export interface PeekPlan {
  /** The ClientHello (sni/alpn routes, or an sni key in a pool it reaches). */
  readonly hello: boolean;
  /** The protocol sniffed from the first bytes (protocol routes). */
  readonly protocol: boolean;
}

export interface FrontendPlan {
  readonly name: string;
  readonly config: FrontendConfig;
  readonly acceptProxy: 'off' | 'optional' | 'required';
  readonly trusted: AddressMatcher;
  readonly admission: Admission;
  readonly maxConnections: number;
  readonly handshakeMs: number;
  /** Compiled routes, or null: every connection goes to `pool`. */
  readonly routes: RouteTable | null;
  readonly pool: string | null;
  /** Every pool it can reach, in route order. */
  readonly pools: readonly string[];
  readonly peek: PeekPlan;
  /** Some client bytes must be read before placement. */
  readonly peeks: boolean;
}

export interface Plan {
  readonly config: Config;
  readonly frontends: readonly FrontendPlan[];
  readonly pools: ReadonlyMap<string, PoolPlan>;
}

/** The table a pool's entries live in. §3 pools keep their old id, so stores and snapshots carry over. */
export function tableIdOf(p: PoolConfig): string | null {
  if (p.affinity.key === 'none') return null;
  if (p.persistence.table !== null) return `table:${p.persistence.table}`;
  return p.implicitOf !== null ? `frontend:${p.name}` : `pool:${p.name}`;
}

export function compilePool(p: PoolConfig): PoolPlan {
  return {
    name: p.name,
    config: p,
    implicitOf: p.implicitOf,
    tableId: tableIdOf(p),
    key: { kind: p.affinity.key, ipv4_prefix: p.affinity.ipv4_prefix, ipv6_prefix: p.affinity.ipv6_prefix, fallback: p.affinity.fallback },
    backends: p.backends.map((b) => ({
      name: b.name,
      address: b.address,
      weight: b.weight,
      backup: b.backup,
      sendProxy: b.send_proxy ?? p.send_proxy,
      maxConnections: b.max_connections,
    })),
    connectMs: p.timeouts.connect,
    idleMs: p.timeouts.idle,
    retries: p.retries,
  };
}

export function compileFrontend(fe: FrontendConfig, pools: ReadonlyMap<string, PoolPlan>): FrontendPlan {
  const routes = fe.routes === null ? null : RouteTable.compile(fe.routes.map(routeSpec));
  const reach = fe.routes === null ? [fe.pool!] : [...new Set(fe.routes.map((r) => r.pool))];
  const hello = (routes?.needsHello ?? false) || reach.some((name) => {
    const p = pools.get(name);
    return p !== undefined && needsHello(p.key);
  });
  const protocol = routes?.needsProtocol ?? false;
  return {
    name: fe.name,
    config: fe,
    acceptProxy: fe.accept_proxy,
    trusted: new AddressMatcher(fe.trusted_proxies),
    admission: new Admission(fe.allow, fe.deny),
    maxConnections: fe.max_connections,
    handshakeMs: fe.timeouts.handshake,
    routes,
    pool: fe.routes === null ? fe.pool : null,
    pools: reach,
    peek: { hello, protocol },
    peeks: hello || protocol,
  };
}

function routeSpec(r: RouteConfig): RouteSpec {
  return { name: r.name ?? null, pool: r.pool, match: r.match ?? null };
}

export function compile(config: Config): Plan {
  const pools = new Map(config.pools.map((p) => [p.name, compilePool(p)]));
  return { config, pools, frontends: config.frontends.map((fe) => compileFrontend(fe, pools)) };
}

/** A route's conditions as one line of text (status page, /status): `sni a.example.com, *.b.example.com; source 10.0.0.0/8`. */
export function describeMatch(m: RouteConfig['match']): string {
  if (m === undefined) return '(default)';
  const parts: string[] = [];
  for (const k of ['sni', 'alpn', 'source', 'protocol', 'destination_port'] as const) {
    const v = m[k];
    if (v !== undefined) parts.push(`${k} ${v.join(', ')}`);
  }
  return parts.join('; ');
}
