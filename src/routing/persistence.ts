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

/** A table's first capacity; it doubles as it fills, up to max_entries. */
export const INITIAL_CAPACITY = 1024;
/** Old entries moved over per write while a doubled table drains its old cache. */
const DRAIN_STEP = 8;

export interface Clock {
  now(): number;
}

interface Pinned {
  /** undefined: the entry was deleted while connections stayed open. */
  backend: string | undefined;
  connections: number;
}

export class LocalTable implements PersistenceTable {
  private lru: LRUCache<string, string>;
  /** After a doubling: the smaller cache, drained into `lru` as writes come. */
  private old: LRUCache<string, string> | null = null;
  private capacity: number;
  private readonly pinned = new Map<string, Pinned>();
  private evicted = 0;

  constructor(
    readonly ttlMs: number,
    readonly maxEntries: number,
    private readonly clock: Clock = performance,
    private readonly wallClock: Clock = Date,
  ) {
    this.capacity = Math.min(maxEntries, INITIAL_CAPACITY);
    this.lru = this.makeLru(this.capacity);
  }

  /**
   * lru-cache preallocates its arrays for `max` entries (about 44 bytes each: 44 MB for a million), so the
   * table starts small and doubles its capacity as it fills, up to max_entries: its memory follows its
   * entries. After a doubling the old cache is drained into the new one a few entries per write (and any
   * key looked up moves at once), each with what is left of its ttl, so no write ever waits for a whole
   * copy. Expiry is exact; recency is kept within each cache, and entries drained late count as recent.
   */
  private makeLru(max: number): LRUCache<string, string> {
    const clock = this.clock;
    return new LRUCache<string, string>({
      max,
      ttl: this.ttlMs,
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

  /** Before a key is written: drain a little of the old cache; grow rather than evict while below max_entries. */
  private room(key: string): void {
    if (this.old !== null) {
      this.old.delete(key); // the write supersedes it
      this.drain(DRAIN_STEP);
    }
    if (this.capacity >= this.maxEntries || this.lru.size < this.capacity || this.lru.has(key)) return;
    this.lru.purgeStale();
    if (this.lru.size < this.capacity) return;
    if (this.old !== null) this.drain(Infinity); // never two old caches (a doubling drains long before the next)
    this.old = this.lru;
    this.capacity = Math.min(this.maxEntries, this.capacity * 2);
    this.lru = this.makeLru(this.capacity);
    this.drain(DRAIN_STEP); // old entries first: they are older than the write that made room
  }

  /** Move up to `n` of the old cache's least recent entries into the live one. */
  private drain(n: number): void {
    const old = this.old;
    if (old === null) return;
    const keys: string[] = [];
    for (const k of old.rkeys()) {
      if (keys.length >= n) break;
      keys.push(k);
    }
    for (const k of keys) this.moveOver(old, k);
    if (old.size === 0) this.old = null;
  }

  private moveOver(old: LRUCache<string, string>, key: string): string | undefined {
    const v = old.get(key);
    const left = old.getRemainingTTL(key);
    old.delete(key);
    if (v === undefined || left <= 0 || this.lru.has(key)) return undefined;
    this.lru.set(key, v, { ttl: left });
    return v;
  }

  /** The key's idle entry, moved into the live cache if the old one had it. */
  private fetch(key: string): string | undefined {
    const v = this.lru.get(key);
    if (v !== undefined || this.old === null || !this.old.has(key)) return v;
    const got = this.moveOver(this.old, key);
    if (this.old.size === 0) this.old = null;
    return got;
  }

  /** How many entries the table has room for now (it grows up to max_entries). */
  get allocated(): number {
    return this.capacity;
  }

  /** Live entries. Expired ones are purged first (O(n): for status and metrics, not per connection). */
  get size(): number {
    this.lru.purgeStale();
    this.old?.purgeStale();
    let deleted = 0;
    for (const p of this.pinned.values()) if (p.backend === undefined) deleted++;
    return this.lru.size + (this.old?.size ?? 0) + this.pinned.size - deleted;
  }

  get evictions(): number {
    return this.evicted;
  }

  lookup(key: string): string | undefined {
    return this.pinned.get(key)?.backend ?? this.fetch(key);
  }

  assign(key: string, backend: string): void {
    const p = this.pinned.get(key);
    if (p) p.backend = backend;
    else {
      this.room(key);
      this.lru.set(key, backend);
    }
  }

  /** Put back an entry with what was left of its ttl (snapshots, reloads). */
  restore(key: string, backend: string, ttlMs: number): void {
    if (ttlMs <= 0 || this.pinned.has(key)) return;
    this.room(key);
    this.lru.set(key, backend, { ttl: Math.min(ttlMs, this.ttlMs) });
  }

  open(key: string): void {
    const p = this.pinned.get(key);
    if (p) {
      p.connections++;
      return;
    }
    const backend = this.fetch(key);
    if (backend === undefined) return; // never assigned (or no persistence): nothing to pin
    this.lru.delete(key);
    this.pinned.set(key, { backend, connections: 1 });
  }

  close(key: string): void {
    const p = this.pinned.get(key);
    if (!p) return;
    if (--p.connections > 0) return;
    this.pinned.delete(key);
    if (p.backend !== undefined) {
      this.room(key);
      this.lru.set(key, p.backend);
    }
  }

  delete(key: string): boolean {
    const p = this.pinned.get(key);
    let had = false;
    if (p && p.backend !== undefined) {
      p.backend = undefined; // the connections stay counted
      had = true;
    }
    const inOld = this.old?.delete(key) ?? false;
    return this.lru.delete(key) || inOld || had;
  }

  clear(): number {
    const n = this.size;
    for (const p of this.pinned.values()) p.backend = undefined;
    this.lru.clear();
    this.old = null;
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
    for (const cache of this.old === null ? [this.lru] : [this.lru, this.old]) {
      for (const [k, b] of cache.entries()) {
        if (!keep(b, k)) {
          cache.delete(k);
          n++;
        }
      }
    }
    return n;
  }

  get(key: string): PersistenceEntry | undefined {
    const p = this.pinned.get(key);
    if (p?.backend !== undefined) return { key, backend: p.backend, expiresAt: null, connections: p.connections };
    if (p) return undefined;
    const backend = this.fetch(key);
    if (backend === undefined) return undefined;
    return { key, backend, expiresAt: this.expiry(this.lru, key), connections: 0 };
  }

  *entries(): IterableIterator<PersistenceEntry> {
    for (const [key, p] of this.pinned) if (p.backend !== undefined) yield { key, backend: p.backend, expiresAt: null, connections: p.connections };
    for (const cache of this.old === null ? [this.lru] : [this.lru, this.old]) {
      for (const [key, backend] of cache.entries()) yield { key, backend, expiresAt: this.expiry(cache, key), connections: 0 };
    }
  }

  /** Wall-clock expiry: the same value however often it is asked (one fixed offset between the two clocks). */
  private expiry(cache: LRUCache<string, string>, key: string): number {
    this.wallOffset ??= this.wallClock.now() - this.clock.now();
    const now = (this.frozenNow = this.clock.now());
    try {
      return Math.round(this.wallOffset + now + cache.getRemainingTTL(key));
    } finally {
      this.frozenNow = undefined;
    }
  }

  private frozenNow: number | undefined;

  private wallOffset: number | undefined;
}
