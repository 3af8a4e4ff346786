/**
 * A connection's claim on a backend (STYLE §5, "a lease, not bookkeeping").
 * Placement returns a Lease that owns two things: the backend's count of
 * open connections, and the pin that keeps the key's table entry alive while
 * the connection is open. `failed()` hands the count on to the next backend
 * (or gives it back); `release()` gives back whatever is still held, once.
 * Nothing else changes a backend's count, so counts cannot drift.
 *
 * Three implementations: LocalPlacement here (one process, or the primary of
 * workers), StorePlacement (Redis in front of it), RemotePlacement (a worker
 * asking the primary, which holds a LocalPlacement lease per connection).
 */
import type { ConnectFailure } from '../proxy/dialer.js';
import type { BackendRuntime } from '../health/state.js';
import type { Via } from '../routing/router.js';
import { UNHASHED } from '../routing/router.js';
import type { PoolRuntime } from './pool.js';

export interface Lease {
  /** The backend to dial now. */
  readonly backend: string;
  readonly via: Via;
  /** The connect succeeded. */
  connected(): void;
  /** The connect failed: the next backend to try (its count taken), or null when none is left. */
  failed(why: ConnectFailure): Promise<Lease | null>;
  /** The connection is over: give back the backend's count and the key's pin. Idempotent. */
  release(): void;
}

export interface Placement {
  /** A lease on a backend for a new connection with this key, or null when no backend is eligible. */
  acquire(key: string | null): Promise<Lease | null>;
}

/** l4lb's own resource errors are never the backend's fault (SPEC §15). */
export function countsAgainstBackend(why: ConnectFailure): boolean {
  return why !== 'local';
}

/** Placement from the pool's own router, table and health. Decisions are taken synchronously, in acquire(). */
export class LocalPlacement implements Placement {
  constructor(private readonly pool: PoolRuntime) {}

  acquire(key: string | null): Promise<Lease | null> {
    return Promise.resolve(this.acquireNow(key));
  }

  acquireNow(key: string | null): LocalLease | null {
    const p = this.pool;
    const d = p.router.decide(key, UNHASHED, p.table, p.view);
    if (d === null) return null;
    const b = p.backends[d.backend]!;
    if (key !== null && p.table !== null && d.write) p.table.assign(key, b.name);
    if (d.via === 'last_resort') lastResort(p, key, b);
    return new LocalLease(p, key, b, d.via);
  }
}

function lastResort(p: PoolRuntime, key: string | null, b: BackendRuntime): void {
  p.log.warn({ key, backend: b.name }, 'placed on draining backend: last resort');
}

export class LocalLease implements Lease {
  private holding: BackendRuntime | null;
  private pinned: boolean;
  private readonly tried: Set<number>;
  private attempts = 0;
  /** The first decision was an overflow: the key's entry stays as it is. */
  private readonly keepEntry: boolean;
  backend: string;
  via: Via;

  constructor(
    private readonly pool: PoolRuntime,
    readonly key: string | null,
    b: BackendRuntime,
    via: Via,
  ) {
    this.holding = b;
    this.backend = b.name;
    this.via = via;
    b.active++;
    this.pinned = key !== null && pool.table !== null;
    if (this.pinned) pool.table!.open(key!);
    this.keepEntry = via === 'overflow';
    this.tried = new Set();
  }

  connected(): void {
    if (this.holding) this.pool.health.success(this.holding);
  }

  failed(why: ConnectFailure): Promise<Lease | null> {
    return Promise.resolve(this.failedNow(why));
  }

  /** Moves this lease to the next backend (returning it), or gives the count back (returning null). */
  failedNow(why: ConnectFailure): LocalLease | null {
    const p = this.pool;
    const b = this.holding;
    if (b === null) return null;
    this.holding = null;
    b.active--;
    if (countsAgainstBackend(why)) p.health.failure(b, why);
    const i = p.router.index.get(b.name);
    if (i !== undefined) this.tried.add(i);
    if (++this.attempts > p.plan.retries) return null;
    const next = this.nextBackend();
    if (next === null) return null;
    this.holding = next;
    this.backend = next.name;
    this.via = 'failover';
    next.active++;
    if (this.key !== null && p.table !== null && !this.keepEntry) p.table.assign(this.key, next.name);
    return this;
  }

  private nextBackend(): BackendRuntime | null {
    const p = this.pool;
    const key = this.key;
    // Another connection of this key may have failed over already: follow it, so they all agree.
    const moved = key !== null && !this.keepEntry ? p.table?.lookup(key) : undefined;
    const m = moved === undefined ? undefined : p.router.index.get(moved);
    if (m !== undefined && !this.tried.has(m) && p.view.keeps(m) && p.view.hasRoom(m)) return p.backends[m]!;
    const d = p.router.next(key, UNHASHED, p.view, this.tried);
    if (d === null) return null;
    const b = p.backends[d.backend]!;
    if (d.via === 'last_resort') lastResort(p, key, b);
    return b;
  }

  /** Before connecting: the key belongs elsewhere (another instance placed it first, says the store). */
  moveTo(name: string): boolean {
    const p = this.pool;
    const to = p.backendByName(name);
    if (!to || this.holding === null) return false;
    this.holding.active--;
    to.active++;
    this.holding = to;
    this.backend = to.name;
    this.via = 'table';
    if (this.key !== null) p.table?.assign(this.key, to.name);
    return true;
  }

  get keepsEntry(): boolean {
    return this.keepEntry;
  }

  get isPinned(): boolean {
    return this.pinned;
  }

  release(): void {
    if (this.holding !== null) {
      this.holding.active--;
      this.holding = null;
    }
    if (this.pinned) {
      this.pinned = false;
      this.pool.table?.close(this.key!);
    }
  }
}
