/**
 * limits.per_source (SPEC §14): open connections and new connections per
 * second, per client address (after PROXY; IPv6 per ipv6_prefix). Sources
 * live in an LRU bounded by max_sources, so a flood of spoofed addresses
 * cannot grow it; a source forgotten that way starts again from zero.
 */
import { LRUCache } from 'lru-cache';
import { sourceIpKey } from '../routing/affinity.js';

export interface SourceLimitOptions {
  readonly connections: number | null;
  /** New connections per second, or null. */
  readonly rate: number | null;
  readonly ipv6_prefix: number;
  readonly max_sources: number;
}

interface Source {
  open: number;
  tokens: number;
  at: number;
}

export class SourceLimits {
  private readonly sources: LRUCache<string, Source>;

  constructor(
    readonly opts: SourceLimitOptions,
    private readonly clock: { now(): number } = performance,
  ) {
    this.sources = new LRUCache<string, Source>({ max: opts.max_sources });
  }

  private keyOf(ip: string): string {
    return sourceIpKey(ip, { ipv4_prefix: 32, ipv6_prefix: this.opts.ipv6_prefix });
  }

  /** A new connection from `ip`: true (and counted open) if within the limits. */
  admit(ip: string): boolean {
    const k = this.keyOf(ip);
    const now = this.clock.now();
    const { connections, rate } = this.opts;
    let s = this.sources.get(k);
    if (!s) {
      s = { open: 0, tokens: rate ?? 0, at: now };
      this.sources.set(k, s);
    }
    if (connections !== null && s.open >= connections) return false;
    if (rate !== null) {
      s.tokens = Math.min(rate, s.tokens + ((now - s.at) * rate) / 1000);
      s.at = now;
      if (s.tokens < 1) return false;
      s.tokens -= 1;
    }
    s.open++;
    return true;
  }

  /** A connection admitted by admit() is over. */
  release(ip: string): void {
    const s = this.sources.peek(this.keyOf(ip));
    if (s && s.open > 0) s.open--;
  }

  get tracked(): number {
    return this.sources.size;
  }
}
