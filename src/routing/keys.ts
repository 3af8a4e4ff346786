/**
 * The one key choice (SPEC §1, §10), used by live traffic and `l4lb explain`
 * alike: a pool's key plan and what the connection showed → key and where it
 * came from. Pure: no sockets, no config parsing.
 */
import { sniKey, sourceIpKey, type AffinityOptions } from './affinity.js';

/** Where the key came from, as `connection closed` and explain report it. */
export type KeySource = 'socket' | 'proxy' | 'sni' | 'fallback';

export interface KeyPlan extends AffinityOptions {
  readonly kind: 'source_ip' | 'sni' | 'none';
  /** For `sni`: what a connection without a usable server name is keyed by. */
  readonly fallback: 'source_ip' | 'none';
}

export interface KeyFacts {
  /** The client address (canonical), after PROXY. */
  readonly client: string;
  /** The address came from a PROXY header. */
  readonly viaProxy: boolean;
  /** The ClientHello's server name; null when there was none, or no complete hello. */
  readonly sni: string | null;
}

export interface ChosenKey {
  readonly key: string | null;
  readonly source: KeySource;
}

/** Does this plan need the ClientHello? */
export function needsHello(plan: KeyPlan): boolean {
  return plan.kind === 'sni';
}

export function affinityKey(plan: KeyPlan, facts: KeyFacts): ChosenKey {
  switch (plan.kind) {
    case 'none':
      return { key: null, source: facts.viaProxy ? 'proxy' : 'socket' };
    case 'source_ip':
      return { key: sourceIpKey(facts.client, plan), source: facts.viaProxy ? 'proxy' : 'socket' };
    case 'sni':
      if (facts.sni !== null) return { key: sniKey(facts.sni), source: 'sni' };
      return { key: plan.fallback === 'none' ? null : sourceIpKey(facts.client, plan), source: 'fallback' };
    default: {
      const never: never = plan.kind;
      throw new Error(`unknown key kind ${String(never)}`);
    }
  }
}
