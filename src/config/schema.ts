/**
 * The config schema: the one table of defaults (SPEC §3) and the typed,
 * resolved shape the rest of l4lb reads. Durations become milliseconds,
 * addresses become HostPort, CIDRs are checked. Unknown keys are errors.
 */
import { z } from 'zod';
import { parseCidr, parseDuration, parseHostPort, type HostPort } from './parse.js';

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (typeof ms === 'string') {
    ctx.addIssue({ code: 'custom', message: ms });
    return z.NEVER;
  }
  return ms;
});

/** A duration that must be more than zero: a 0s interval or timeout would be a busy loop or an instant failure. */
const positive = duration.pipe(z.number().min(1, 'must be more than 0'));

export interface Address extends HostPort {
  readonly text: string;
}

const address = z.string().transform((text, ctx): Address => {
  const hp = parseHostPort(text);
  if (typeof hp === 'string') {
    ctx.addIssue({ code: 'custom', message: hp });
    return z.NEVER;
  }
  return { ...hp, text };
});

const cidr = z.string().superRefine((text, ctx) => {
  const c = parseCidr(text);
  if (typeof c === 'string') ctx.addIssue({ code: 'custom', message: c });
});

/** `off` may also be written as YAML `false`. */
function offOr<const T extends readonly [string, ...string[]]>(values: T) {
  return z.union([z.literal(false), z.enum(['off', ...values])]).transform((v) => (v === false ? 'off' : v) as 'off' | T[number]);
}

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const name = z.string().regex(/^[a-z0-9_-]+$/, 'must match [a-z0-9_-]+');

const backend = z.strictObject({
  name,
  address: address.refine((a) => a.port !== 0, 'port 0 is not a backend port'),
  weight: int(0, 256).default(1),
  backup: z.boolean().default(false),
  send_proxy: offOr(['v1', 'v2']).optional(),
  max_connections: int(0, 10_000_000).default(0),
});

const healthCheck = z.strictObject({
  interval: positive.default(2000),
  timeout: positive.default(1000),
  rise: int(1, 100).default(2),
  fall: int(1, 100).default(3),
  send: z.string().nullable().default(null),
  expect: z.string().nullable().default(null),
});

/** Everything that decides placement: a pool's keys, and (in the §3 form) a frontend's. */
const placement = {
  affinity: z
    .strictObject({
      key: z.enum(['source_ip', 'sni', 'none']).default('source_ip'),
      ipv4_prefix: int(0, 32).default(32),
      ipv6_prefix: int(0, 128).default(128),
      fallback: z.enum(['source_ip', 'none']).default('source_ip'),
    })
    .prefault({}),
  persistence: z
    .strictObject({
      ttl: duration.pipe(z.number().min(1, 'must be more than 0')).default(30 * 60_000),
      max_entries: int(1, 100_000_000).default(1_000_000),
      /** Write the table to this file every snapshot_interval and at stop; load it at start. */
      snapshot: z.string().min(1).nullable().default(null),
      snapshot_interval: duration.pipe(z.number().min(100, 'must be at least 100ms')).default(10_000),
      /** Pools (or §3 frontends) naming the same table share it. */
      table: name.nullable().default(null),
      /** redis://HOST:PORT/DB: share entries between l4lb instances. */
      store: z
        .string()
        .regex(/^redis:\/\/[^/\s]+(\/\d+)?$/, 'expected redis://HOST:PORT/DB')
        .nullable()
        .default(null),
      on_recovery: z.enum(['stay', 'return']).default('stay'),
    })
    .prefault({}),
  balance: z
    .strictObject({
      /** Unset means: consistent_hash, or round_robin when affinity.key is none. */
      algorithm: z.enum(['consistent_hash', 'round_robin', 'least_conn']).optional(),
      vnodes: int(1, 100_000).default(1000),
      /** Cap on open connections per backend at placement: factor × average (e.g. 1.25). */
      bounded_load: z.number().min(1, 'must be at least 1').max(100).nullable().default(null),
    })
    .prefault({}),
  retries: int(0, 100).default(2),
  passive: z
    .strictObject({
      max_fails: int(1, 1000).default(3),
      fail_timeout: positive.default(10_000),
    })
    .prefault({}),
  send_proxy: offOr(['v1', 'v2']).default('off'),
  health_check: healthCheck.optional(),
};

/** The keys of `placement` (and timeouts.connect / timeouts.idle): a frontend with `pool` or `routes` must not set them. */
export const PLACEMENT_KEYS = ['affinity', 'persistence', 'balance', 'retries', 'passive', 'send_proxy', 'health_check', 'backends'] as const;

const oneOrMany = <T extends z.ZodType>(item: T) => z.preprocess((v) => (Array.isArray(v) ? v : [v]), z.array(item).min(1, 'at least one value'));

/** An exact server name or `*.suffix`; stored lower-case without a trailing dot. */
const sniPattern = z.string().transform((text, ctx) => {
  const t = text.toLowerCase().replace(/\.$/, '');
  const body = t.startsWith('*.') ? t.slice(2) : t;
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(body) || body.length > 253) {
    ctx.addIssue({ code: 'custom', message: `invalid server name "${text}" (expected a DNS name or *.suffix)` });
    return z.NEVER;
  }
  return t;
});

const route = z.strictObject({
  /** Shown as `route` in the close line; unset: the route's 0-based index. */
  name: name.optional(),
  match: z
    .strictObject({
      sni: oneOrMany(sniPattern).optional(),
      alpn: oneOrMany(z.string().min(1).max(255)).optional(),
      source: oneOrMany(cidr).optional(),
      protocol: oneOrMany(z.enum(['tls', 'ssh', 'http', 'other'])).optional(),
      destination_port: oneOrMany(int(1, 65535)).optional(),
    })
    .optional(),
  pool: name,
});

const frontend = z.strictObject({
  name,
  listen: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(address).min(1, 'at least one listen address')),
  accept_proxy: offOr(['optional', 'required']).default('off'),
  trusted_proxies: z.array(cidr).default([]),
  allow: z.array(cidr).default([]),
  deny: z.array(cidr).default([]),
  max_connections: int(1, 10_000_000).default(10_000),
  /** Per client address (after PROXY; IPv6 per ipv6_prefix): open connections and new ones per second (SPEC §14). */
  limits: z
    .strictObject({
      per_source: z
        .strictObject({
          connections: int(1, 10_000_000).nullable().default(null),
          rate: z
            .string()
            .transform((text, ctx) => {
              const m = /^(\d+)\/s$/.exec(text.trim());
              if (!m || Number(m[1]) < 1) {
                ctx.addIssue({ code: 'custom', message: `invalid rate "${text}" (expected e.g. 50/s)` });
                return z.NEVER;
              }
              return Number(m[1]);
            })
            .nullable()
            .default(null),
          ipv6_prefix: int(0, 128).default(64),
          /** Sources tracked at most (least recently seen forgotten first): a spoofing flood cannot grow it. */
          max_sources: int(1, 10_000_000).default(100_000),
        })
        .nullable()
        .default(null),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      connect: positive.default(2000),
      idle: duration.default(3_600_000),
      handshake: positive.default(5000),
    })
    .prefault({}),
  /** The pool every connection goes to (SPEC §9). */
  pool: name.optional(),
  /** Which pool a connection goes to: first match wins. */
  routes: z.array(route).min(1, 'at least one route').optional(),
  ...placement,
  /** The §3 form: the frontend's own backends (an implicit pool named after the frontend). */
  backends: z.array(backend).min(1, 'at least one backend').optional(),
});

const pool = z.strictObject({
  name,
  ...placement,
  timeouts: z
    .strictObject({
      connect: positive.default(2000),
      idle: duration.default(3_600_000),
    })
    .prefault({}),
  backends: z.array(backend).min(1, 'at least one backend'),
});

export const configSchema = z.strictObject({
  admin: z
    .strictObject({
      listen: address.prefault('127.0.0.1:9100'),
      token: z.string().min(1).nullable().default(null),
    })
    .optional(),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  shutdown_grace: duration.default(30_000),
  /** Processes serving the listeners: 1 (no separate workers), N, or auto (one per CPU). */
  workers: z.union([z.literal('auto'), int(1, 256)]).default(1),
  pools: z.array(pool).default([]),
  frontends: z.array(frontend).min(1, 'at least one frontend'),
});

type Parsed = z.output<typeof configSchema>;
type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type Algorithm = 'consistent_hash' | 'round_robin' | 'least_conn';
type ParsedPool = Parsed['pools'][number];
type ParsedFrontend = Parsed['frontends'][number];
type ParsedRoute = NonNullable<ParsedFrontend['routes']>[number];

/** A pool: explicit (`pools:`), or implicit (a §3 frontend's own backends, named after it). */
export type PoolConfig = DeepReadonly<Omit<ParsedPool, 'balance'>> & {
  readonly balance: { readonly algorithm: Algorithm; readonly vnodes: number; readonly bounded_load: number | null };
  /** The frontend whose §3 form made this pool, or null for a pool under `pools:`. */
  readonly implicitOf: string | null;
  /** Where its settings are written in the file: `pools[2]` or `frontends[0]`. */
  readonly at: string;
};

export type RouteConfig = DeepReadonly<ParsedRoute>;

/**
 * A frontend. `pool` is always set when `routes` is null (for the §3 form, the implicit pool's name,
 * which is the frontend's). The §3 form also keeps its placement settings here as they were written,
 * so a §1–8 config reads the same; l4lb itself reads them from the pool.
 */
export type FrontendConfig = DeepReadonly<Omit<ParsedFrontend, 'balance' | 'pool' | 'routes'>> & {
  readonly balance: PoolConfig['balance'];
  readonly pool: string | null;
  readonly routes: readonly RouteConfig[] | null;
};

export type Config = DeepReadonly<Omit<Parsed, 'frontends' | 'pools'>> & {
  readonly frontends: readonly FrontendConfig[];
  /** Every pool, explicit and implicit. */
  readonly pools: readonly PoolConfig[];
};
export type BackendConfig = PoolConfig['backends'][number];
export type AffinityKeyKind = PoolConfig['affinity']['key'];
export type ProxyVersion = 'off' | 'v1' | 'v2';
