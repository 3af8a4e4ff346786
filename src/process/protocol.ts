/** Messages between the primary and its workers (node:cluster IPC). */
import type { Status } from '../admin/control.js';
import type { Config } from '../config/schema.js';
import type { ConnectFailure } from '../proxy/dialer.js';
import type { Via } from '../routing/router.js';

/** A lease as the worker sees it: the backend to dial and how it was chosen. */
export interface Granted {
  readonly backend: string;
  readonly via: Via;
}

/**
 * What a worker asks and tells the primary about its connections' leases, in order, batched per
 * event-loop turn. Each connection's lease has an id (the worker's): acquire (id, pool, key), failed
 * (id, why), connected (id), release (id). The primary holds one lease per id until its release, or
 * until the worker dies.
 */
export type LeaseOp = ['a', number, string, string | null] | ['f', number, ConnectFailure] | ['ok', number] | ['x', number];

export type ToPrimary =
  | { t: 'b'; ops: LeaseOp[] }
  | { t: 'listening'; fe: string; address: string; port: number }
  /** The worker listens for messages now: send it its config. */
  | { t: 'hello' }
  | { t: 'ready' }
  | { t: 'stats'; id: number; s: Status }
  | { t: 'applied'; gen: number; error: string | null };

export type ToWorker =
  | { t: 'config'; gen: number; config: Config }
  /** Answers to acquire/failed, batched: [id, the lease's backend now, or null: none]. */
  | { t: 'r'; a: Array<[number, Granted | null]> }
  | { t: 'stats?'; id: number }
  | { t: 'stop' };
