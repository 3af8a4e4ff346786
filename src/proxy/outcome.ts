/**
 * The one place where a connection's outcome becomes its counters and its
 * log line: `connection refused` (closed before a backend was chosen) or
 * `connection closed` (SPEC §2, §9).
 */
import type { BackendRuntime } from '../health/state.js';
import type { KeySource } from '../routing/keys.js';
import type { FrontendRuntime, RefusedReason } from './frontend.js';

export type CloseReason =
  | 'client_closed'
  | 'backend_closed'
  | 'idle_timeout'
  | 'no_backend'
  | 'connect_failed'
  | 'client_error'
  | 'backend_error'
  | 'untrusted_proxy' // logged as a refusal, not a close (see closed())
  | 'shutdown';

/** Refused before relaying. `wasActive`: it had been counted as an open connection. */
export function refused(fe: FrontendRuntime, client: string | null, reason: RefusedReason, detail: string | null, wasActive: boolean): void {
  if (wasActive) fe.stats.active--;
  fe.stats.refused[reason]++;
  if (detail === null) fe.log.info({ client, reason }, 'connection refused');
  else fe.log.info({ client, reason, detail }, 'connection refused');
}

export interface CloseRecord {
  readonly client: string | null;
  readonly key: string | null;
  readonly keySource: KeySource | null;
  readonly pool: string | null;
  readonly route: string | null;
  readonly backend: BackendRuntime | null;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly reason: CloseReason;
  readonly detail?: string | undefined;
  /** The backends tried with each outcome (`["pg1:refused", "pg2:ok"]`), when more than one (SPEC §15). */
  readonly attempts?: readonly string[] | undefined;
  /** It had been counted as an open connection. */
  readonly wasActive: boolean;
}

export function closed(fe: FrontendRuntime, r: CloseRecord): void {
  if (r.reason === 'untrusted_proxy') {
    // Closed before any client byte reached a backend: a refusal (SPEC §15), whatever was dialled meanwhile.
    refused(fe, r.client, 'untrusted_proxy', 'PROXY header from a peer outside trusted_proxies', r.wasActive);
    return;
  }
  const st = fe.stats;
  if (r.wasActive) st.active--;
  st.bytesIn += r.bytesIn;
  st.bytesOut += r.bytesOut;
  if (r.reason === 'no_backend') st.noBackend++;
  else if (r.reason === 'connect_failed') st.connectFailed++;
  const b = r.backend;
  if (b) {
    b.bytesIn += r.bytesIn;
    b.bytesOut += r.bytesOut;
  }
  const line: Record<string, unknown> = {
    client: r.client,
    key: r.key,
    key_source: r.keySource,
    pool: r.pool,
    route: r.route,
    backend: b?.name ?? null,
    bytes_in: r.bytesIn,
    bytes_out: r.bytesOut,
    duration_ms: r.durationMs,
    reason: r.reason,
  };
  if (r.attempts !== undefined) line.attempts = r.attempts;
  if (r.detail !== undefined) line.detail = r.detail;
  fe.log.info(line, 'connection closed');
}
