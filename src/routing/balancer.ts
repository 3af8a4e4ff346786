/**
 * First placement. The session only ever calls `pick(hash, view, tried)`;
 * failover is the same call with the failed backends in `tried`. Backups
 * are picked only when no primary is eligible and untried.
 */
import { Ring } from './ring.js';
import type { Algorithm } from '../config/schema.js';

/** Live backend state as the routing code may see it (indexes are the snapshot's). */
export interface BackendView {
  /** Up, enabled, not draining, weight > 0: may take a new key. */
  acceptsNew(i: number): boolean;
  /** Up or draining, not disabled: an existing entry may keep it. */
  keeps(i: number): boolean;
  /** Below its max_connections. */
  hasRoom(i: number): boolean;
  /** Up and draining (weight > 0): may take a new key only when no other backend can (SPEC §15). */
  lastResort?(i: number): boolean;
  active(i: number): number;
}

export interface Pick {
  readonly backend: number;
  /** Ring point index for consistent_hash, else -1. */
  readonly point: number;
}

export interface Balancer {
  pick(hash: number, view: BackendView, tried: ReadonlySet<number>): Pick | null;
}

export interface PoolMember {
  readonly name: string;
  readonly weight: number;
  readonly backup: boolean;
}

export function createBalancer(algorithm: Algorithm, members: readonly PoolMember[], vnodes: number): Balancer {
  switch (algorithm) {
    case 'consistent_hash':
      return new ConsistentHash(members, vnodes);
    case 'round_robin':
      return new RoundRobin(members, false);
    case 'least_conn':
      return new RoundRobin(members, true);
    default: {
      const never: never = algorithm;
      throw new Error(`unknown algorithm ${String(never)}`);
    }
  }
}

export class ConsistentHash implements Balancer {
  readonly primary: Ring;
  readonly backup: Ring;

  constructor(members: readonly PoolMember[], vnodes: number) {
    this.primary = Ring.build(members.map((m) => ({ name: m.name, weight: m.backup ? 0 : m.weight })), vnodes);
    this.backup = Ring.build(members.map((m) => ({ name: m.name, weight: m.backup ? m.weight : 0 })), vnodes);
  }

  pick(hash: number, view: BackendView, tried: ReadonlySet<number>): Pick | null {
    const ok = (i: number) => !tried.has(i) && view.acceptsNew(i) && view.hasRoom(i);
    const hit = this.primary.walk(hash, ok) ?? this.backup.walk(hash, ok);
    return hit && { backend: hit.owner, point: hit.point };
  }
}

/** Round robin, or least connections (ties broken round robin), primaries first. */
export class RoundRobin implements Balancer {
  private next = 0;
  private readonly primaries: number[];
  private readonly backups: number[];

  constructor(
    members: readonly PoolMember[],
    private readonly leastConn: boolean,
  ) {
    const live = members.map((m, i) => ({ m, i })).filter(({ m }) => m.weight > 0);
    this.primaries = live.filter(({ m }) => !m.backup).map(({ i }) => i);
    this.backups = live.filter(({ m }) => m.backup).map(({ i }) => i);
  }

  pick(_hash: number, view: BackendView, tried: ReadonlySet<number>): Pick | null {
    const start = this.next;
    for (const pool of [this.primaries, this.backups]) {
      let best = -1;
      let at = 0;
      for (let k = 0; k < pool.length; k++) {
        const i = pool[(start + k) % pool.length]!;
        if (tried.has(i) || !view.acceptsNew(i) || !view.hasRoom(i)) continue;
        if (best < 0 || (this.leastConn && view.active(i) < view.active(best))) ((best = i), (at = k));
        if (!this.leastConn) break;
      }
      if (best >= 0) {
        // Resume after the one picked: a skipped backend's turns are spread over the others,
        // not all handed to its successor.
        this.next = (start + at + 1) % pool.length;
        return { backend: best, point: -1 };
      }
    }
    return null;
  }
}
