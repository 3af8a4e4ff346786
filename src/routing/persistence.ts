/**
 * The persistence table: key → backend name. Idle entries live in an LRU
 * with an idle ttl (capped at max_entries, least recently used goes first).
 * A key with open connections is pinned outside the LRU, so it can neither
 * expire nor be evicted; its ttl starts again when its last connection
 * closes. Deleting a pinned key's entry keeps its connection count: a later
 * connection's new entry is pinned by every open connection of the key,
 * old and new (SPEC §1: no entry expires while its key has a connection
 * open). The clock is injectable for tests.
 */
import { LRUCache } from 'lru-cache';

export interface PersistenceEntry {
  readonly key: string;
  readonly backend: string;
  /** Milliseconds since the epoch; null while the key has open connections. */
  readonly expiresAt: number | null;
  readonly connections: number;
}

/** What the router and the session need; a shared store can implement it too. */
export interface PersistenceTable {
  lookup(key: string): string | undefined;
  /** Write (or rewrite) the key's backend; its ttl starts now unless pinned. */
  assign(key: string, backend: string): void;
  /** A connection of this key opened / closed (pins the entry while any is open). */
  open(key: string): void;
  close(key: string): void;
  delete(key: string): boolean;
  /** Drop every entry; returns how many. */
  clear(): number;
  /** Drop the entries `keep` rejects; returns how many. */
  retain(keep: (backend: string, key: string) => boolean): number;
  entries(): IterableIterator<PersistenceEntry>;
  get(key: string): PersistenceEntry | undefined;
  readonly size: number;
  readonly evictions: number;
}

export interface Clock {
  now(): number;
}

interface Pinned {
  /** undefined: the entry was deleted while connections stayed open. */
  backend: string | undefined;
  connections: number;
}

export class LocalTable implements PersistenceTable {
  private readonly lru: LRUCache<string, string>;
  private readonly pinned = new Map<string, Pinned>();
  private evicted = 0;

  constructor(
    readonly ttlMs: number,
    readonly maxEntries: number,
    private readonly clock: Clock = performance,
    private readonly wallClock: Clock = Date,
  ) {
    this.lru = new LRUCache<string, string>({
      max: maxEntries,
      ttl: ttlMs,
      ttlAutopurge: false,
      updateAgeOnGet: false,
      ttlResolution: 0,
      // One reading for both halves of expiry() (the clock and the remaining ttl), so it is the same every time.
      perf: { now: () => this.frozenNow ?? clock.now() },
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.evicted++;
      },
    });
  }

  /** Live entries. Expired ones are purged first (O(n): for status and metrics, not per connection). */
  get size(): number {
    this.lru.purgeStale();
    let deleted = 0;
    for (const p of this.pinned.values()) if (p.backend === undefined) deleted++;
    return this.lru.size + this.pinned.size - deleted;
  }

  get evictions(): number {
    return this.evicted;
  }

  lookup(key: string): string | undefined {
    return this.pinned.get(key)?.backend ?? this.lru.get(key);
  }

  assign(key: string, backend: string): void {
    const p = this.pinned.get(key);
    if (p) p.backend = backend;
    else this.lru.set(key, backend);
  }

  /** Put back an entry with what was left of its ttl (snapshots, reloads). */
  restore(key: string, backend: string, ttlMs: number): void {
    if (ttlMs <= 0 || this.pinned.has(key)) return;
    this.lru.set(key, backend, { ttl: Math.min(ttlMs, this.ttlMs) });
  }

  open(key: string): void {
    const p = this.pinned.get(key);
    if (p) {
      p.connections++;
      return;
    }
    const backend = this.lru.get(key);
    if (backend === undefined) return; // never assigned (or no persistence): nothing to pin
    this.lru.delete(key);
    this.pinned.set(key, { backend, connections: 1 });
  }

  close(key: string): void {
    const p = this.pinned.get(key);
    if (!p) return;
    if (--p.connections > 0) return;
    this.pinned.delete(key);
    if (p.backend !== undefined) this.lru.set(key, p.backend);
  }

  delete(key: string): boolean {
    const p = this.pinned.get(key);
    let had = false;
    if (p && p.backend !== undefined) {
      p.backend = undefined; // the connections stay counted
      had = true;
    }
    return this.lru.delete(key) || had;
  }

  clear(): number {
    const n = this.size;
    for (const p of this.pinned.values()) p.backend = undefined;
    this.lru.clear();
    return n;
  }

  retain(keep: (backend: string, key: string) => boolean): number {
    let n = 0;
    for (const [k, p] of this.pinned) {
      if (p.backend !== undefined && !keep(p.backend, k)) {
        p.backend = undefined;
        n++;
      }
    }
    for (const [k, b] of this.lru.entries()) {
      if (!keep(b, k)) {
        this.lru.delete(k);
        n++;
      }
    }
    return n;
  }

  get(key: string): PersistenceEntry | undefined {
    const p = this.pinned.get(key);
    if (p?.backend !== undefined) return { key, backend: p.backend, expiresAt: null, connections: p.connections };
    if (p) return undefined;
    const backend = this.lru.get(key);
    if (backend === undefined) return undefined;
    return { key, backend, expiresAt: this.expiry(key), connections: 0 };
  }

  *entries(): IterableIterator<PersistenceEntry> {
    for (const [key, p] of this.pinned) if (p.backend !== undefined) yield { key, backend: p.backend, expiresAt: null, connections: p.connections };
    for (const [key, backend] of this.lru.entries()) yield { key, backend, expiresAt: this.expiry(key), connections: 0 };
  }

  /** Wall-clock expiry: the same value however often it is asked (one fixed offset between the two clocks). */
  private expiry(key: string): number {
    this.wallOffset ??= this.wallClock.now() - this.clock.now();
    const now = (this.frozenNow = this.clock.now());
    try {
      return Math.round(this.wallOffset + now + this.lru.getRemainingTTL(key));
    } finally {
      this.frozenNow = undefined;
    }
  }

  private frozenNow: number | undefined;

  private wallOffset: number | undefined;
}
