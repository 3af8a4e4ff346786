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
  active: number;
  total: number;
  refused: Record<string, number>;
  bytes_in: number;
  bytes_out: number;
  failovers: number;
  no_backend: number;
  connect_failed: number;
  persistence: { size: number; hits: number; misses: number; evictions: number };
  /** With persistence.store: is Redis reachable, and how many store commands failed. */
  store?: { url: string; up: boolean; errors: number };
  backends: BackendStatus[];
}

export interface Status {
  version: string;
  uptime_s: number;
  frontends: FrontendStatus[];
}

export type AdminAction = 'drain' | 'disable' | 'enable';

export type Lookup<T> = { ok: true; value: T } | { ok: false; error: string };

export interface Control {
  accepting(): boolean;
  status(): Status | Promise<Status>;
  entries(frontend: string, key?: string): Lookup<PersistenceEntry[]>;
  /** Forget one key, every key of one backend, or everything; returns how many. */
  forget(frontend: string, which: { key?: string; backend?: string }): Lookup<number>;
  setMode(frontend: string, backend: string, action: AdminAction): Lookup<BackendStatus>;
}
