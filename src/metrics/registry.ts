/**
 * Prometheus exposition (prom-client). Figures are read from a Status
 * snapshot at scrape time, so the connection path pays nothing for them;
 * only health-check durations are observed as they happen.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Status } from '../admin/control.js';

const FE = ['frontend'] as const;
/** Persistence and backends belong to pools (SPEC §9); a §3 frontend's pool has the frontend's name. */
const POOL = ['pool'] as const;
const BE = ['pool', 'backend'] as const;

export class Metrics {
  readonly registry = new Registry();
  private readonly feActive = this.gauge('l4lb_connections_active', 'Open client connections', FE);
  private readonly feTotal = this.counter('l4lb_connections_total', 'Accepted client connections, refused ones included', FE);
  private readonly refused = this.counter('l4lb_connections_refused_total', 'Connections refused before relaying, by reason', ['frontend', 'reason']);
  private readonly failed = this.counter('l4lb_connections_failed_total', 'Connections closed without a backend (no_backend, connect_failed)', ['frontend', 'reason']);
  private readonly feBytesIn = this.counter('l4lb_bytes_in_total', 'Bytes client → backend', FE);
  private readonly feBytesOut = this.counter('l4lb_bytes_out_total', 'Bytes backend → client', FE);
  private readonly failovers = this.counter('l4lb_failovers_total', 'Connect attempts moved to another backend', FE);
  private readonly fdEpisodes = this.counter('l4lb_fd_exhaustion_episodes_total', 'Times l4lb ran out of file descriptors (connections were dropped until some closed)', [] as const);
  private readonly acceptErrors = this.counter('l4lb_accept_errors_total', 'accept() failures: l4lb out of file descriptors or another local resource', FE);
  private readonly hits = this.counter('l4lb_persistence_hits_total', 'Connections whose key had an entry on an eligible backend', POOL);
  private readonly misses = this.counter('l4lb_persistence_misses_total', 'Connections placed by the balancer', POOL);
  private readonly evictions = this.counter('l4lb_persistence_evictions_total', 'Entries evicted at max_entries', POOL);
  private readonly size = this.gauge('l4lb_persistence_entries', 'Persistence table size', POOL);
  private readonly storeUp = this.gauge('l4lb_store_up', '1 while the Redis store is reachable (frontends with persistence.store)', POOL);
  private readonly storeErrors = this.counter('l4lb_store_errors_total', 'Redis store commands that failed or timed out', POOL);
  private readonly up = this.gauge('l4lb_backend_up', '1 if the backend is healthy (whatever its admin state)', BE);
  private readonly state = this.gauge('l4lb_backend_state', '1 for the backend\'s current state', ['pool', 'backend', 'state']);
  private readonly beActive = this.gauge('l4lb_backend_connections_active', 'Open connections per backend', BE);
  private readonly beTotal = this.counter('l4lb_backend_connections_total', 'Relayed connections per backend', BE);
  private readonly beBytesIn = this.counter('l4lb_backend_bytes_in_total', 'Bytes client → backend', BE);
  private readonly beBytesOut = this.counter('l4lb_backend_bytes_out_total', 'Bytes backend → client', BE);
  private readonly connectFailures = this.counter('l4lb_backend_connect_failures_total', 'Failed connects of real traffic', BE);
  readonly checkDuration = new Histogram({
    name: 'l4lb_health_check_duration_seconds',
    help: 'Active health check duration',
    labelNames: ['pool', 'backend', 'result'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'l4lb_' });
  }

  async render(status: Status): Promise<string> {
    this.update(status);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private update(s: Status): void {
    for (const m of [this.feActive, this.size, this.up, this.state, this.beActive, this.storeUp]) m.reset();
    this.storeErrors.reset();
    for (const m of [this.feTotal, this.refused, this.failed, this.feBytesIn, this.feBytesOut, this.failovers, this.acceptErrors, this.fdEpisodes, this.hits, this.misses, this.evictions, this.beTotal, this.beBytesIn, this.beBytesOut, this.connectFailures]) m.reset();
    this.fdEpisodes.inc(s.fd_exhaustion_episodes);
    for (const fe of s.frontends) {
      const f = { frontend: fe.name };
      this.feActive.set(f, fe.active);
      this.feTotal.inc(f, fe.total);
      for (const [reason, n] of Object.entries(fe.refused)) this.refused.inc({ ...f, reason }, n);
      this.failed.inc({ ...f, reason: 'no_backend' }, fe.no_backend);
      this.failed.inc({ ...f, reason: 'connect_failed' }, fe.connect_failed);
      this.feBytesIn.inc(f, fe.bytes_in);
      this.feBytesOut.inc(f, fe.bytes_out);
      this.failovers.inc(f, fe.failovers);
      this.acceptErrors.inc(f, fe.accept_errors);
    }
    for (const p of s.pools) {
      const f = { pool: p.name };
      this.hits.inc(f, p.persistence.hits);
      this.misses.inc(f, p.persistence.misses);
      this.evictions.inc(f, p.persistence.evictions);
      this.size.set(f, p.persistence.size);
      if (p.store) {
        this.storeUp.set(f, p.store.up ? 1 : 0);
        this.storeErrors.inc(f, p.store.errors);
      }
      for (const be of p.backends) {
        const b = { pool: p.name, backend: be.name };
        this.up.set(b, be.health === 'up' ? 1 : 0);
        for (const st of ['up', 'down', 'draining', 'disabled'] as const) this.state.set({ ...b, state: st }, be.state === st ? 1 : 0);
        this.beActive.set(b, be.active);
        this.beTotal.inc(b, be.total);
        this.beBytesIn.inc(b, be.bytes_in);
        this.beBytesOut.inc(b, be.bytes_out);
        this.connectFailures.inc(b, be.connect_failures);
      }
    }
  }

  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }
}
