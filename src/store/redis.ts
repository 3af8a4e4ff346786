/**
 * A persistence table shared between l4lb instances through Redis. The
 * local table stays in front as a cache; Redis holds `key → backend` with
 * the ttl as its expiry. A new key is claimed with SET NX, so instances
 * racing on one client's first connections agree on one backend; changes
 * (placements after a failover, deletions) are published so the other
 * instances' caches follow within milliseconds. While Redis is unreachable,
 * commands fail at once (no offline queue) and l4lb routes on its own table
 * and ring; ioredis reconnects with backoff.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { Lease, LocalLease, LocalPlacement, Placement } from '../placement/lease.js';
import type { ConnectFailure } from '../proxy/dialer.js';
import type { PersistenceTable } from '../routing/persistence.js';
import type { Via } from '../routing/router.js';

/** No connection waits longer than this for Redis (SPEC §6 allows 2 s). */
export const STORE_TIMEOUT_MS = 500;
const INSTANCE = randomBytes(6).toString('hex');

interface Change {
  k: string;
  b: string | null;
  o: string;
}

export class RedisStore {
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly channel: string;
  up = false;
  errors = 0;
  private readonly listeners = new Set<(key: string, backend: string | null) => void>();

  constructor(
    readonly url: string,
    readonly tableId: string,
    readonly ttlMs: number,
    log: Logger,
  ) {
    const opts = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: STORE_TIMEOUT_MS,
      connectTimeout: 1000,
      retryStrategy: (times: number) => Math.min(100 * times, 1000),
      lazyConnect: false,
    };
    this.prefix = `l4lb:${tableId}:`;
    this.channel = `l4lb:${tableId}`;
    this.cmd = new Redis(url, opts);
    this.sub = new Redis(url, { ...opts, commandTimeout: undefined });
    this.cmd.on('ready', () => {
      if (!this.up) log.info({ store: url, table: tableId }, 'store connected');
      this.up = true;
    });
    const down = (err?: Error) => {
      if (this.up) log.warn({ store: url, table: tableId, err: err?.message }, 'store unreachable: routing on the local table');
      this.up = false;
    };
    this.cmd.on('error', (err: Error) => down(err));
    this.cmd.on('close', () => down());
    this.sub.on('error', () => {});
    this.sub.on('ready', () => void this.sub.subscribe(this.channel).catch(() => {}));
    this.sub.on('message', (_ch: string, text: string) => {
      let c: Change;
      try {
        c = JSON.parse(text) as Change;
      } catch {
        return;
      }
      if (c.o === INSTANCE || typeof c.k !== 'string') return;
      for (const l of this.listeners) l(c.k, typeof c.b === 'string' ? c.b : null);
    });
  }

  /**
   * Keys whose first placement is being claimed, by this table's frontends:
   * their other connections wait for the outcome rather than follow the
   * local guess, which the claim may overturn.
   */
  readonly claiming = new Map<string, Promise<unknown>>();

  onChange(l: (key: string, backend: string | null) => void): void {
    this.listeners.add(l);
  }

  /** SET NX: our backend if we claimed the key, theirs if another instance had, null if Redis did not answer. */
  async claim(key: string, backend: string): Promise<string | null> {
    if (!this.up) return null;
    try {
      const k = this.prefix + key;
      const set = await this.cmd.set(k, backend, 'PX', this.ttlMs, 'NX');
      if (set === 'OK') {
        this.publish(key, backend);
        return backend;
      }
      const theirs = await this.cmd.get(k);
      return theirs ?? backend;
    } catch {
      this.errors++;
      return null;
    }
  }

  /** Overwrite (a failover, or an entry not eligible here) and tell the others. */
  set(key: string, backend: string): void {
    if (!this.up) return;
    this.cmd.set(this.prefix + key, backend, 'PX', this.ttlMs).then(
      () => this.publish(key, backend),
      () => void this.errors++,
    );
  }

  /** The key's ttl starts again (a connection opened or closed). */
  touch(key: string): void {
    if (!this.up) return;
    this.cmd.pexpire(this.prefix + key, this.ttlMs).catch(() => void this.errors++);
  }

  delete(key: string): void {
    if (!this.up) return;
    this.cmd.del(this.prefix + key).then(
      () => this.publish(key, null),
      () => void this.errors++,
    );
  }

  private publish(key: string, backend: string | null): void {
    const c: Change = { k: key, b: backend, o: INSTANCE };
    this.cmd.publish(this.channel, JSON.stringify(c)).catch(() => void this.errors++);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}

/** The local placement in front, the store behind: local hits need no round trip; misses claim in Redis. */
export class StorePlacement implements Placement {
  constructor(
    private readonly local: LocalPlacement,
    private readonly table: PersistenceTable,
    private readonly store: RedisStore,
    /** Is this backend name eligible here to keep an existing entry? */
    private readonly keeps: (backend: string) => boolean,
  ) {}

  async acquire(key: string | null): Promise<Lease | null> {
    const claiming = key === null ? undefined : this.store.claiming.get(key);
    if (claiming) {
      await claiming;
      return this.acquire(key);
    }
    if (key === null || this.table.lookup(key) !== undefined || !this.store.up) {
      const l = this.local.acquireNow(key);
      if (key !== null && l !== null && l.via !== 'table' && l.via !== 'overflow') this.store.set(key, l.backend);
      return l && new StoreLease(l, this.store);
    }
    const p = this.claim(key);
    const done = () => void this.store.claiming.delete(key);
    this.store.claiming.set(key, p.then(done, done)); // waiters run after the delete: they hit the table
    return p;
  }

  private async claim(key: string): Promise<Lease | null> {
    const l = this.local.acquireNow(key); // places, pins, counts
    if (l === null) return null;
    const winner = await this.store.claim(key, l.backend);
    if (winner === null || winner === l.backend) return new StoreLease(l, this.store);
    // Another instance placed this key first: follow it, unless theirs is not eligible here (then ours replaces it).
    if (!this.keeps(winner) || !l.moveTo(winner)) this.store.set(key, l.backend);
    return new StoreLease(l, this.store);
  }
}

/** A local lease whose failovers are written to the store, and whose end restarts the key's ttl there. */
class StoreLease implements Lease {
  constructor(
    private readonly l: LocalLease,
    private readonly store: RedisStore,
  ) {}

  get backend(): string {
    return this.l.backend;
  }

  get via(): Via {
    return this.l.via;
  }

  connected(): void {
    this.l.connected();
  }

  async failed(why: ConnectFailure): Promise<Lease | null> {
    const next = this.l.failedNow(why);
    if (next === null) return null;
    if (next.key !== null && !next.keepsEntry) this.store.set(next.key, next.backend);
    return this;
  }

  release(): void {
    const pinned = this.l.isPinned;
    this.l.release();
    if (pinned) this.store.touch(this.l.key!);
  }
}
