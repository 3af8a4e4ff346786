/**
 * The single-process root (`workers: 1`): one process holds the routing
 * state (tables, stores, snapshots, health checks), serves the listeners and
 * the admin API.
 */
import { compile } from '../config/compile.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { netDialer, type Dialer } from '../proxy/dialer.js';
import { ResourceWatch } from '../proxy/resources.js';
import { PersistenceSet } from '../store/persistence-set.js';
import { ownStatus, PoolControl } from './control.js';
import { Runtimes } from './runtimes.js';
import { Serving } from './serving.js';
import { holdingDeps, startAdmin, warnAdminChange, type Admin } from './shared.js';

export class SingleProcess {
  private readonly persistence: PersistenceSet;
  private readonly runtimes: Runtimes;
  private readonly resources: ResourceWatch;
  readonly serving: Serving;
  readonly control: PoolControl;
  private admin: Admin | null = null;
  private stopping: Promise<void> | null = null;

  constructor(
    private config: Config,
    readonly log: Logger,
    dialer: Dialer = netDialer,
  ) {
    this.persistence = new PersistenceSet(log);
    this.resources = new ResourceWatch(log);
    this.runtimes = new Runtimes(holdingDeps(log, dialer, this.persistence, () => this.admin?.metrics ?? null, this.resources));
    this.serving = new Serving(this.runtimes, dialer, log);
    this.control = new PoolControl(this.runtimes, this.persistence, () => ownStatus(this.runtimes, this.persistence, this.serving, this.resources), () => this.stopping === null);
  }

  /** Bind every listen address and the admin listener; throws BindError (nothing left bound) if one fails. */
  async start(): Promise<void> {
    const plan = compile(this.config);
    this.persistence.apply(plan);
    this.runtimes.apply(plan);
    await this.persistence.load();
    await this.serving.start(this.config);
    try {
      this.admin = await startAdmin(this.config, this.control, this.log);
    } catch (err) {
      await this.serving.stop(0);
      throw err;
    }
    this.runtimes.startChecks();
    this.persistence.schedule();
    this.resources.start();
  }

  /** Apply a validated config. Throws BindError and keeps the running config if a new address cannot be bound. */
  async reload(next: Config): Promise<void> {
    const plan = compile(next);
    await this.serving.rebind(next);
    this.persistence.apply(plan);
    this.runtimes.apply(plan);
    warnAdminChange(this.config, next, this.log);
    this.config = next;
    this.runtimes.startChecks();
    this.persistence.schedule();
  }

  /** Stop accepting, wait for open connections up to shutdown_grace, then close the rest. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.runtimes.stopChecks();
      this.resources.stop();
      await this.serving.stop(this.config.shutdown_grace);
      this.runtimes.dispose();
      await this.persistence.close();
      await this.admin?.server.close();
    })();
    return this.stopping;
  }
}
