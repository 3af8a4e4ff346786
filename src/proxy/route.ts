/**
 * What a session asks of routing. In one process it is LocalRoute: the
 * frontend's router, table and health, called synchronously. Under
 * `workers: N` a worker's sessions use a RemoteRoute that asks the primary,
 * which holds the one table, so persistence stays exact across workers.
 *
 * Contract: `decide` (and a `retry` that returns a decision) writes the
 * key's entry unless told to keep it, pins the key while the connection is
 * open, and counts the chosen backend as busy; `closed` undoes the pin and
 * the count. Backends are named, so a reload in between cannot mix them up.
 */
import { UNHASHED, type Decision } from '../routing/router.js';
import type { FrontendRuntime } from '../runtime.js';

export interface Routed {
  readonly backend: string;
  readonly via: Decision['via'];
}

export interface RetryRequest {
  readonly failed: string;
  readonly why: string;
  readonly tried: readonly string[];
  /** false: the last attempt failed; only report it. */
  readonly wantNext: boolean;
  /** The first decision was an overflow: keep the key's entry as it is. */
  readonly keepEntry: boolean;
}

export interface RouteClient {
  decide(key: string | null): Routed | null | Promise<Routed | null>;
  retry(key: string | null, r: RetryRequest): Routed | null | Promise<Routed | null>;
  connected(backend: string): void;
  /** The connection is over. `backend` is the one it held (null if none); `pinned`: decide returned a decision. */
  closed(key: string | null, backend: string | null, pinned: boolean): void;
}

/** Routing state lives here: the frontend's own router, table and health policy. */
export class LocalRoute implements RouteClient {
  constructor(private readonly rt: FrontendRuntime) {}

  decide(key: string | null): Routed | null {
    const rt = this.rt;
    const d = rt.router.decide(key, UNHASHED, rt.table, rt.view);
    if (d === null) return null;
    const b = rt.backends[d.backend]!;
    b.active++;
    if (key !== null && rt.table !== null) {
      if (d.write) rt.table.assign(key, b.name);
      rt.table.open(key);
    }
    return { backend: b.name, via: d.via };
  }

  retry(key: string | null, r: RetryRequest): Routed | null {
    const rt = this.rt;
    const idx = rt.router.index;
    const failed = idx.get(r.failed);
    if (failed !== undefined) {
      const b = rt.backends[failed]!;
      b.active--;
      rt.health.failure(b, r.why);
    }
    if (!r.wantNext) return null;
    const tried = new Set<number>();
    for (const n of r.tried) {
      const i = idx.get(n);
      if (i !== undefined) tried.add(i);
    }
    // Another connection of this key may have failed over already: follow it, so they all agree.
    const moved = key !== null && !r.keepEntry ? rt.table?.lookup(key) : undefined;
    const m = moved === undefined ? undefined : idx.get(moved);
    if (m !== undefined && !tried.has(m) && rt.view.keeps(m) && rt.view.hasRoom(m)) {
      rt.backends[m]!.active++;
      return { backend: moved!, via: 'failover' };
    }
    const d = rt.router.next(key, UNHASHED, rt.view, tried);
    if (d === null) return null;
    const b = rt.backends[d.backend]!;
    b.active++;
    if (key !== null && rt.table !== null && !r.keepEntry) rt.table.assign(key, b.name);
    return { backend: b.name, via: d.via };
  }

  /** The key's connection moves from one backend to another before connecting (the store knew better). */
  swap(key: string, from: string, to: string): void {
    const rt = this.rt;
    const a = rt.backendByName(from);
    const b = rt.backendByName(to);
    if (a) a.active--;
    if (b) b.active++;
    rt.table?.assign(key, to);
  }

  connected(backend: string): void {
    const i = this.rt.router.index.get(backend);
    if (i !== undefined) this.rt.health.success(this.rt.backends[i]!);
  }

  closed(key: string | null, backend: string | null, pinned: boolean): void {
    const rt = this.rt;
    if (backend !== null) {
      const i = rt.router.index.get(backend);
      if (i !== undefined) rt.backends[i]!.active--;
    }
    if (pinned && key !== null) rt.table?.close(key);
  }
}
