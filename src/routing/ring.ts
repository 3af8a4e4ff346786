/**
 * An immutable weighted consistent-hash ring. Points derive from backend
 * names (never list positions), so every instance with the same backends
 * builds the same ring. Hashes sit in a sorted Uint32Array, owners in a
 * parallel Uint16Array; lookups binary-search, failover walks clockwise
 * skipping what the caller rejects, at most one lap.
 */
import { backendPoints } from './hash.js';

/** Total ring points are capped near this; vnodes are scaled down past it. */
export const MAX_RING_POINTS = 1 << 20;
const SPACE = 2 ** 32;

export interface RingMember {
  readonly name: string;
  readonly weight: number;
}

export class Ring {
  private constructor(
    /** Member names in the order given to build(); owners index into it. */
    readonly names: readonly string[],
    readonly hashes: Uint32Array,
    readonly owners: Uint16Array,
    /** How many members own at least one point. */
    private readonly present: number,
  ) {}

  /** Members with weight 0 get no points. `vnodes` points per unit of weight. */
  static build(members: readonly RingMember[], vnodes: number): Ring {
    if (members.length > 0xffff) throw new RangeError(`ring: too many backends (${members.length} > 65535)`);
    const wanted = members.reduce((s, m) => s + m.weight * vnodes, 0);
    const scale = wanted > MAX_RING_POINTS ? MAX_RING_POINTS / wanted : 1;
    const counts = members.map((m) => (m.weight === 0 ? 0 : Math.max(1, Math.round(m.weight * vnodes * scale))));
    const total = counts.reduce((s, c) => s + c, 0);
    const raw = new Uint32Array(total);
    const rawOwner = new Uint16Array(total);
    let at = 0;
    members.forEach((m, i) => {
      backendPoints(m.name, counts[i]!, raw, at);
      rawOwner.fill(i, at, at + counts[i]!);
      at += counts[i]!;
    });
    // Sort by hash; equal hashes are ordered by owner name so the ring does not depend on list order.
    const order = new Uint32Array(total);
    for (let i = 0; i < total; i++) order[i] = i;
    order.sort((a, b) => raw[a]! - raw[b]! || cmp(members[rawOwner[a]!]!.name, members[rawOwner[b]!]!.name));
    const hashes = new Uint32Array(total);
    const owners = new Uint16Array(total);
    for (let i = 0; i < total; i++) {
      hashes[i] = raw[order[i]!]!;
      owners[i] = rawOwner[order[i]!]!;
    }
    const present = counts.filter((c) => c > 0).length;
    return new Ring(members.map((m) => m.name), hashes, owners, present);
  }

  get size(): number {
    return this.hashes.length;
  }

  /** Index of the first point at or clockwise after `hash` (wrapping), or -1 on an empty ring. */
  pointFor(hash: number): number {
    const h = this.hashes;
    if (h.length === 0) return -1;
    let lo = 0;
    let hi = h.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (h[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === h.length ? 0 : lo;
  }

  /**
   * Walk clockwise from `hash` to the first owner `accept` takes; at most one
   * lap, and stops early once every member has been seen. Returns the owner
   * index and the ring point, or null.
   */
  walk(hash: number, accept: (owner: number) => boolean): { owner: number; point: number } | null {
    const n = this.hashes.length;
    const start = this.pointFor(hash);
    if (start < 0) return null;
    const seen = new Uint8Array(this.names.length);
    let distinct = 0;
    for (let step = 0; step < n && distinct < this.present; step++) {
      const point = (start + step) % n;
      const owner = this.owners[point]!;
      if (seen[owner] === 1) continue;
      seen[owner] = 1;
      distinct++;
      if (accept(owner)) return { owner, point };
    }
    return null;
  }

  /** Each member's exact fraction of the hash space (sums to 1 when the ring is not empty). */
  shares(): number[] {
    const out = new Array<number>(this.names.length).fill(0);
    const h = this.hashes;
    const n = h.length;
    for (let i = 0; i < n; i++) {
      const arc = i === 0 ? SPACE - h[n - 1]! + h[0]! : h[i]! - h[i - 1]!;
      out[this.owners[i]!]! += arc / SPACE;
    }
    return out;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
