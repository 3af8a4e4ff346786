/**
 * What the admin API may see and do: plain data out (so several workers'
 * figures can be summed), three verbs in. It knows nothing of sockets.
 */
import type { BackendStateName } from '../health/state.js';
import type { PersistenceEntry } from '../routing/persistence.js';

export interface BackendStatus {
  name: string;
  address: string;
  state: BackendStateName;
  /** Health alone (state shows the admin mode first). */
  health: 'up' | 'down';
  weight: number;
  backup: boolean;
  active: number;
  total: number;
  bytes_in: number;
  bytes_out: number;
  connect_failures: number;
}

export interface FrontendStatus {
  name: string;
  listen: string[];
  /** The pools it routes to. */
  pools: string[];
  /** Its routes in order (absent for a frontend without routes): `match` as text, e.g. `sni *.pg.example.com`. */
  routes?: { name: string | null; match: string; pool: string }[];
  active: number;
  total: number;
  refused: Record<string, number>;
  bytes_in: number;
  bytes_out: number;
  failovers: number;
  no_backend: number;
  connect_failed: number;
  /** accept() failures: l4lb out of file descriptors (or another local resource). */
  accept_errors: number;
  /** For a frontend sending every connection to one pool: that pool's (§4); else zeros. */
  persistence: PersistenceFigures;
  store?: StoreStatus;
  /** For a frontend sending every connection to one pool: that pool's backends (§4); else empty. */
  backends: BackendStatus[];
}

export interface PersistenceFigures {
  size: number;
  hits: number;
  misses: number;
  evictions: number;
}

/** With persistence.store: is Redis reachable, and how many store commands failed. */
export interface StoreStatus {
  url: string;
  up: boolean;
  errors: number;
}

export interface PoolStatus {
  name: string;
  /** A §3 frontend's own backends (named after the frontend). */
  implicit: boolean;
  persistence: PersistenceFigures;
  store?: StoreStatus;
  backends: BackendStatus[];
}

export interface Status {
  version: string;
  uptime_s: number;
  /** Times l4lb ran out of file descriptors (an episode ends when they are free again). */
  fd_exhaustion_episodes: number;
  frontends: FrontendStatus[];
  pools: PoolStatus[];
}

export type AdminAction = 'drain' | 'disable' | 'enable';

export type Lookup<T> = { ok: true; value: T } | { ok: false; error: string };

export interface Control {
  accepting(): boolean;
  status(): Status | Promise<Status>;
  /** `pool`: a pool's name, or a frontend's that sends every connection to one pool. */
  entries(pool: string, key?: string): Lookup<PersistenceEntry[]>;
  /** Forget one key, every key of one backend, or everything; returns how many. */
  forget(pool: string, which: { key?: string; backend?: string }): Lookup<number>;
  setMode(pool: string, backend: string, action: AdminAction): Lookup<BackendStatus>;
}
