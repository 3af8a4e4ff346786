/**
 * A backend's runtime state. Health (`up` | `down`) comes from passive
 * failure counting (and later active checks); the admin mode (`normal` |
 * `draining` | `disabled`) from operators. Both change only through
 * guarded transitions, and every health transition is reported once.
 */
import type { BackendPlan } from '../config/compile.js';

export type Health = 'up' | 'down';
export type Mode = 'normal' | 'draining' | 'disabled';
/** What /status and logs show: the admin mode wins over health. */
export type BackendStateName = 'up' | 'down' | 'draining' | 'disabled';

export interface TransitionListener {
  (backend: BackendRuntime, to: Health, reason: string): void;
}

export class BackendRuntime {
  health: Health = 'up';
  mode: Mode = 'normal';
  /** Consecutive failures (connects of real traffic, and active checks). */
  fails = 0;
  /** Consecutive successful active checks. */
  oks = 0;
  active = 0;
  total = 0;
  connectFailures = 0;
  bytesIn = 0;
  bytesOut = 0;
  private revive: NodeJS.Timeout | null = null;

  constructor(public plan: BackendPlan) {}

  get name(): string {
    return this.plan.name;
  }

  get state(): BackendStateName {
    return this.mode === 'normal' ? this.health : this.mode;
  }

  /** Guarded: returns false (and changes nothing) when `from` does not hold. */
  transition(from: readonly Health[], to: Health): boolean {
    if (!from.includes(this.health) || this.health === to) return false;
    this.health = to;
    return true;
  }

  setMode(mode: Mode): void {
    this.mode = mode;
  }

  /** Stop any pending timer (the backend left the config, or l4lb stops). */
  dispose(): void {
    if (this.revive) clearTimeout(this.revive);
    this.revive = null;
  }

  /** @internal used by PassiveHealth */
  scheduleRevive(ms: number, fn: () => void): void {
    this.dispose();
    this.revive = setTimeout(() => {
      this.revive = null;
      fn();
    }, ms);
    this.revive.unref();
  }
}

export interface PassiveOptions {
  readonly max_fails: number;
  readonly fail_timeout: number;
}

/** How connection outcomes of real traffic feed a backend's health. */
export interface HealthPolicy {
  success(b: BackendRuntime): void;
  failure(b: BackendRuntime, why: string): void;
}

/**
 * Passive checks: `max_fails` consecutive connect failures mark a backend
 * down for `fail_timeout`; then real traffic may try it again, and one more
 * failure marks it down again at once.
 */
export class PassiveHealth implements HealthPolicy {
  constructor(
    private readonly opts: PassiveOptions,
    private readonly onTransition: TransitionListener,
  ) {}

  success(b: BackendRuntime): void {
    b.fails = 0;
  }

  failure(b: BackendRuntime, why: string): void {
    b.connectFailures++;
    b.fails++;
    if (b.fails < this.opts.max_fails) return;
    if (b.transition(['up'], 'down')) {
      this.onTransition(b, 'down', `${b.fails} consecutive connect failures (last: ${why})`);
      b.scheduleRevive(this.opts.fail_timeout, () => {
        b.fails = this.opts.max_fails - 1;
        if (b.transition(['down'], 'up')) this.onTransition(b, 'up', `fail_timeout ${this.opts.fail_timeout}ms elapsed: retrying with traffic`);
      });
    }
  }
}
