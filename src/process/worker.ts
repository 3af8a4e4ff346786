/**
 * A worker process: serves the shared listening sockets and relays bytes;
 * every lease is taken from the primary (RemotePlacement), which holds the
 * one persistence table, so a key maps to one backend whichever worker
 * accepted its connection.
 */
import { compile } from '../config/compile.js';
import type { Config } from '../config/schema.js';
import { createLogger, type LogFormat, type Logger } from '../log.js';
import { netDialer } from '../proxy/dialer.js';
import { ResourceWatch } from '../proxy/resources.js';
import { Runtimes } from './runtimes.js';
import { Serving } from './serving.js';
import type { Lease, Placement } from '../placement/lease.js';
import type { ConnectFailure } from '../proxy/dialer.js';
import type { Via } from '../routing/router.js';
import type { Status } from '../admin/control.js';
import { ownStatus } from './control.js';
import type { Granted, LeaseOp, ToPrimary, ToWorker } from './protocol.js';

/**
 * The worker's end of the IPC channel. Requests and events go out in order, one message per event-loop
 * turn (connections accepted in one turn cost one write to the primary, not one each).
 */
class Channel {
  private nextId = 1;
  private readonly pending = new Map<number, (d: Granted | null) => void>();
  private batch: LeaseOp[] = [];
  private scheduled = false;

  send(m: ToPrimary): void {
    // A failed send means the primary is gone: 'disconnect' stops this worker (no unhandled 'error').
    if (process.connected) process.send!(m, undefined, undefined, ignore);
  }

  /** Ask the primary; resolves with its answer for this lease id. */
  ask(op: ['a', number, string, string | null] | ['f', number, ConnectFailure]): Promise<Granted | null> {
    return new Promise((resolve) => {
      this.pending.set(op[1], resolve);
      this.post(op);
    });
  }

  newId(): number {
    return this.nextId++;
  }

  answer(a: Array<[number, Granted | null]>): void {
    for (const [id, d] of a) {
      const r = this.pending.get(id);
      this.pending.delete(id);
      r?.(d);
    }
  }

  post(op: LeaseOp): void {
    this.batch.push(op);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const ops = this.batch;
    this.batch = [];
    if (ops.length > 0) this.send({ t: 'b', ops });
  };

  /** Send what is batched now and resolve once it is written (before exiting: the primary's counts stay right). */
  flushed(): Promise<void> {
    if (this.batch.length === 0 || !process.connected) return Promise.resolve();
    const ops = this.batch;
    this.batch = [];
    return new Promise((resolve) => process.send!({ t: 'b', ops } satisfies ToPrimary, undefined, undefined, () => resolve()));
  }
}

function ignore(): void {}

/** Leases held by the primary, one per connection id. */
class RemotePlacement implements Placement {
  constructor(
    private readonly pool: string,
    private readonly ch: Channel,
  ) {}

  async acquire(key: string | null): Promise<Lease | null> {
    const id = this.ch.newId();
    const g = await this.ch.ask(['a', id, this.pool, key]);
    return g === null ? null : new RemoteLease(id, g, this.ch);
  }
}

class RemoteLease implements Lease {
  private released = false;
  backend: string;
  via: Via;

  constructor(
    private readonly id: number,
    g: Granted,
    private readonly ch: Channel,
  ) {
    this.backend = g.backend;
    this.via = g.via;
  }

  connected(): void {
    this.ch.post(['ok', this.id]);
  }

  async failed(why: ConnectFailure): Promise<Lease | null> {
    const g = await this.ch.ask(['f', this.id, why]);
    if (g === null) return null;
    this.backend = g.backend;
    this.via = g.via;
    return this;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.ch.post(['x', this.id]);
  }
}

/**
 * The worker root: runtimes whose pools place through the primary (no tables, no health checks, no
 * admin API), and the data plane serving the shared listening sockets.
 */
class WorkerProcess {
  private readonly runtimes: Runtimes;
  private readonly serving: Serving;
  private readonly resources: ResourceWatch;
  private config: Config;

  constructor(
    config: Config,
    readonly log: Logger,
    ch: Channel,
  ) {
    this.config = config;
    this.resources = new ResourceWatch(log);
    this.runtimes = new Runtimes({ log, dialer: netDialer, resources: this.resources, table: () => null, placement: (p) => new RemotePlacement(p.name, ch) });
    this.serving = new Serving(this.runtimes, netDialer, log, (fe, address, port) => ch.send({ t: 'listening', fe, address, port }));
  }

  async start(): Promise<void> {
    this.runtimes.apply(compile(this.config));
    await this.serving.start(this.config);
    this.resources.start();
  }

  async reload(next: Config): Promise<void> {
    const plan = compile(next);
    await this.serving.rebind(next);
    this.runtimes.apply(plan);
    this.config = next;
  }

  async stop(): Promise<void> {
    this.resources.stop();
    await this.serving.stop(this.config.shutdown_grace);
  }

  /** This worker's traffic figures; the primary adds them to its own. */
  status(): Status {
    return ownStatus(this.runtimes, null, this.serving, this.resources);
  }
}

export function runWorker(logFormat: LogFormat, logLevel: string | undefined): void {
  const ch = new Channel();
  let app: WorkerProcess | null = null;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void (app ? app.stop() : Promise.resolve())
      .then(() => ch.flushed())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop); // the primary is gone
  process.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'r':
        ch.answer(m.a);
        return;
      case 'config':
        void apply(m.gen, m.config);
        return;
      case 'stats?':
        if (app) ch.send({ t: 'stats', id: m.id, s: app.status() });
        return;
      case 'stop':
        stop();
        return;
      default: {
        const never: never = m;
        throw new Error(`unknown message ${JSON.stringify(never)}`);
      }
    }
  });
  ch.send({ t: 'hello' }); // now listening: the primary sends the config

  async function apply(gen: number, config: Config): Promise<void> {
    try {
      if (app === null) {
        app = new WorkerProcess(config, createLogger(logLevel ?? config.log.level, logFormat), ch);
        await app.start();
        ch.send({ t: 'ready' });
      } else {
        await app.reload(config);
        if (logLevel === undefined) app.log.level = config.log.level;
      }
      ch.send({ t: 'applied', gen, error: null });
    } catch (err) {
      ch.send({ t: 'applied', gen, error: (err as Error).message });
      if (gen === 0) process.exit(2);
    }
  }
}
