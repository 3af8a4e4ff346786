/**
 * Pieces the process roots share: how a process that holds the routing state
 * (single process, primary) builds its pools, and its admin listener.
 */
import { AdminServer } from '../admin/server.js';
import type { Control } from '../admin/control.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/registry.js';
import type { Dialer } from '../proxy/dialer.js';
import type { ResourceWatch } from '../proxy/resources.js';
import type { PersistenceSet } from '../store/persistence-set.js';
import type { RuntimeDeps } from './runtimes.js';

/** Pools with their tables from `persistence`, placing through the Redis store where one is configured. */
export function holdingDeps(log: Logger, dialer: Dialer, persistence: PersistenceSet, metrics: () => Metrics | null, resources: ResourceWatch): RuntimeDeps {
  return {
    log,
    dialer,
    resources,
    table: (pp) => persistence.table(pp),
    placement: (p) => {
      const store = persistence.store(p.plan);
      if (!store || !p.table) return null;
      const { StorePlacement } = require('../store/redis.js') as typeof import('../store/redis.js'); // ioredis only when used
      return new StorePlacement(p.local, p.table, store, (name) => p.keeps(name));
    },
    observe: (pool) => (b, seconds, ok) => metrics()?.checkDuration.observe({ pool, backend: b.name, result: ok ? 'pass' : 'fail' }, seconds),
  };
}

export interface Admin {
  readonly server: AdminServer;
  readonly metrics: Metrics;
}

/** The admin listener, when the config has one. prom-client is loaded only then: it costs memory nobody else needs. */
export async function startAdmin(config: Config, control: Control, log: Logger): Promise<Admin | null> {
  const a = config.admin;
  if (!a) return null;
  const { Metrics } = require('../metrics/registry.js') as typeof import('../metrics/registry.js');
  const metrics = new Metrics();
  const server = new AdminServer({ host: a.listen.host, port: a.listen.port, token: a.token }, control, metrics, log);
  await server.listen();
  return { server, metrics };
}

export function warnAdminChange(prev: Config, next: Config, log: Logger): void {
  if (JSON.stringify(next.admin ?? null) !== JSON.stringify(prev.admin ?? null)) log.warn('admin settings changed: they take effect at the next restart');
}
