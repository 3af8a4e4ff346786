/**
 * A frontend compiled from config: router (ring), backend states, table,
 * admission lists and logger, built once per load/reload. Sessions keep the
 * runtime they started with; a reload builds a new one and carries over the
 * table, the counters and the state of backends that still exist.
 */
import type { FrontendConfig } from './config/schema.js';
import { ActiveHealth, type CheckObserver } from './health/checker.js';
import { BackendRuntime, PassiveHealth, type HealthPolicy, type TransitionListener } from './health/state.js';
import type { Dialer } from './proxy/dialer.js';
import { LocalRoute, type RouteClient } from './proxy/route.js';
import type { Logger } from './log.js';
import { Admission, AddressMatcher } from './proxy/admission.js';
import type { BackendView } from './routing/balancer.js';
import type { PersistenceTable } from './routing/persistence.js';
import { Router } from './routing/router.js';

export type RefusedReason = 'denied' | 'over_limit' | 'untrusted_proxy' | 'bad_proxy_header' | 'handshake_timeout';

export interface FrontendStats {
  active: number;
  total: number;
  refused: Record<RefusedReason, number>;
  bytesIn: number;
  bytesOut: number;
  failovers: number;
  noBackend: number;
  connectFailed: number;
}

export function newStats(): FrontendStats {
  return {
    active: 0,
    total: 0,
    refused: { denied: 0, over_limit: 0, untrusted_proxy: 0, bad_proxy_header: 0, handshake_timeout: 0 },
    bytesIn: 0,
    bytesOut: 0,
    failovers: 0,
    noBackend: 0,
    connectFailed: 0,
  };
}

export class FrontendRuntime {
  readonly name: string;
  readonly router: Router;
  readonly admission: Admission;
  readonly trusted: AddressMatcher;
  /** Where outcomes of real traffic go: passive counting, or the active checker. */
  readonly health: HealthPolicy;
  private readonly checker: ActiveHealth | null;
  readonly view: BackendView;
  /** How sessions route: locally, or (in a worker) through the primary. */
  route: RouteClient;
  /** The routing state of this process (what the primary answers workers with). */
  readonly local: LocalRoute;
  private readonly byName: ReadonlyMap<string, BackendRuntime>;

  constructor(
    readonly config: FrontendConfig,
    /** Indexed like router.names. */
    readonly backends: readonly BackendRuntime[],
    /** null when affinity.key is none. */
    readonly table: PersistenceTable | null,
    readonly stats: FrontendStats,
    readonly log: Logger,
    dialer: Dialer,
    observe?: CheckObserver,
  ) {
    this.name = config.name;
    this.byName = new Map(backends.map((b) => [b.name, b]));
    this.router = new Router(config.backends, config.balance.algorithm, config.balance.vnodes, {
      boundedLoad: config.balance.bounded_load,
      onRecovery: config.persistence.on_recovery,
    });
    this.admission = new Admission(config.allow, config.deny);
    this.trusted = new AddressMatcher(config.trusted_proxies);
    const transition: TransitionListener = (b, to, reason) =>
      to === 'down' ? log.warn({ backend: b.name, reason }, 'backend down') : log.info({ backend: b.name, reason }, 'backend up');
    const hc = config.health_check;
    this.checker = hc ? new ActiveHealth(backends, hc, dialer, transition, observe) : null;
    this.health = this.checker ?? new PassiveHealth(config.passive, transition);
    const bs = backends;
    this.view = {
      acceptsNew: (i) => {
        const b = bs[i]!;
        return b.health === 'up' && b.mode === 'normal' && b.config.weight > 0;
      },
      keeps: (i) => {
        const b = bs[i]!;
        return b.health === 'up' && b.mode !== 'disabled';
      },
      hasRoom: (i) => {
        const b = bs[i]!;
        return b.config.max_connections === 0 || b.active < b.config.max_connections;
      },
      active: (i) => bs[i]!.active,
    };
    this.local = new LocalRoute(this);
    this.route = this.local;
  }

  backendByName(name: string): BackendRuntime | undefined {
    return this.byName.get(name);
  }

  /** Start active checks (if configured). */
  start(): void {
    this.checker?.start();
  }

  /** Stop active checks; open connections are not affected. */
  stop(): void {
    this.checker?.stop();
  }

  /** Build a runtime for `config`, reusing what `prev` (the same frontend's last runtime) holds. */
  static build(
    config: FrontendConfig,
    prev: FrontendRuntime | undefined,
    log: Logger,
    dialer: Dialer,
    observe?: CheckObserver,
    /** This frontend's table (shared with others naming the same one); null with affinity none, or in a worker. */
    table: PersistenceTable | null = null,
  ): FrontendRuntime {
    const old = new Map(prev?.backends.map((b) => [b.name, b]));
    const backends = config.backends.map((bc) => {
      const b = old.get(bc.name);
      if (!b) return new BackendRuntime(bc);
      old.delete(bc.name);
      b.config = bc;
      return b;
    });
    for (const gone of old.values()) gone.dispose();
    return new FrontendRuntime(config, backends, table, prev?.stats ?? newStats(), log.child({ frontend: config.name }), dialer, observe);
  }
}
