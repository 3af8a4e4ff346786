/** Messages between the primary and its workers (node:cluster IPC). */
import type { Status } from '../admin/control.js';
import type { Config } from '../config/schema.js';
import type { RetryRequest, Routed } from '../proxy/route.js';

/** One-way events, batched: ['ok', frontend, backend] | ['x', frontend, key, backend, pinned]. */
export type RouteEvent = ['ok', string, string] | ['x', string, string | null, string | null, boolean];

export type ToPrimary =
  | { t: 'd'; id: number; fe: string; key: string | null }
  | { t: 'y'; id: number; fe: string; key: string | null; r: RetryRequest }
  | { t: 'b'; ev: RouteEvent[] }
  | { t: 'listening'; fe: string; address: string; port: number }
  /** The worker listens for messages now: send it its config. */
  | { t: 'hello' }
  | { t: 'ready' }
  | { t: 'stats'; id: number; s: Status }
  | { t: 'applied'; gen: number; error: string | null };

export type ToWorker =
  | { t: 'config'; gen: number; config: Config }
  | { t: 'r'; id: number; d: Routed | null }
  | { t: 'stats?'; id: number }
  | { t: 'stop' };
