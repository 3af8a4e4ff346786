/** Messages between the primary and its workers (node:cluster IPC). */
import type { Status } from '../admin/control.js';
import type { Config } from '../config/schema.js';
import type { RetryRequest, Routed } from '../proxy/route.js';

/**
 * What a worker asks and tells the primary, in order, batched per event-loop turn: decide (id, frontend,
 * key), retry (id, frontend, key, request), connected (frontend, backend), closed (frontend, key, backend, pinned).
 */
export type RouteOp =
  | ['d', number, string, string | null]
  | ['y', number, string, string | null, RetryRequest]
  | ['ok', string, string]
  | ['x', string, string | null, string | null, boolean];

export type ToPrimary =
  | { t: 'b'; ops: RouteOp[] }
  | { t: 'listening'; fe: string; address: string; port: number }
  /** The worker listens for messages now: send it its config. */
  | { t: 'hello' }
  | { t: 'ready' }
  | { t: 'stats'; id: number; s: Status }
  | { t: 'applied'; gen: number; error: string | null };

export type ToWorker =
  | { t: 'config'; gen: number; config: Config }
  /** Answers to decide/retry, batched: [id, decision]. */
  | { t: 'r'; a: Array<[number, Routed | null]> }
  | { t: 'stats?'; id: number }
  | { t: 'stop' };
