/**
 * A frontend's routes (SPEC §9), compiled once at load/reload into hash
 * tables, so that matching a connection costs about the same for 1,000 SNI
 * routes as for 10: the exact name and each `*.suffix` of it are looked up,
 * never scanned. First match wins; every condition of a route must hold; an
 * absent condition holds. Pure: no I/O; never throws.
 */
import { BlockList } from 'node:net';
import { parseCidr } from '../config/parse.js';
import type { Protocol } from './sniff.js';

export interface RouteSpec {
  /** The route's optional `name:`. */
  readonly name: string | null;
  readonly pool: string;
  /** null: the default route (last; the config validator checks that). */
  readonly match: null | {
    /** Exact names or `*.suffix` (one or more labels before `.suffix`); case-insensitive; a trailing dot ignored. */
    readonly sni?: readonly string[];
    /** Any of these offered by the client. */
    readonly alpn?: readonly string[];
    /** CIDRs or single addresses, already validated. */
    readonly source?: readonly string[];
    readonly protocol?: readonly Protocol[];
    readonly destination_port?: readonly number[];
  };
}

export interface RouteFacts {
  /** As the client sent it (matching lower-cases it and strips one trailing dot). */
  readonly sni: string | null;
  readonly alpn: readonly string[];
  /** Canonical IP text (IPv4 dotted, IPv6 RFC 5952, IPv4-mapped folded to IPv4). */
  readonly source: string;
  /** null when not sniffed (no route of the frontend asks for it). */
  readonly protocol: Protocol | null;
  readonly destinationPort: number;
}

export interface RouteMatch {
  readonly index: number;
  /** The route's name, else its 0-based index. */
  readonly label: string;
  readonly pool: string;
}

/** A route's conditions other than `sni` (which the tables answer); null = absent. */
interface CompiledRoute {
  readonly result: RouteMatch;
  readonly alpn: ReadonlySet<string> | null;
  readonly protocol: ReadonlySet<Protocol> | null;
  readonly ports: ReadonlySet<number> | null;
  readonly source: SourceMatcher | null;
}

/** Route indexes, ascending, no repeats. */
type IndexList = readonly number[];

export class RouteTable {
  /** Some route reads the ClientHello (an `sni` or `alpn` condition). */
  readonly needsHello: boolean;
  /** Some route reads the sniffed protocol. */
  readonly needsProtocol: boolean;
  readonly size: number;

  private constructor(
    private readonly routes: readonly CompiledRoute[],
    /** normalized exact name → the routes listing it */
    private readonly exact: ReadonlyMap<string, IndexList>,
    /** normalized suffix ("example.com" for "*.example.com") → the routes listing it */
    private readonly wild: ReadonlyMap<string, IndexList>,
    /** the routes with no `sni` condition (the default route among them) */
    private readonly anyName: IndexList,
    /** shortest and longest key of `wild`, to look up only suffixes that can be there */
    private readonly wildMin: number,
    private readonly wildMax: number,
    flags: { readonly needsHello: boolean; readonly needsProtocol: boolean },
  ) {
    this.size = routes.length;
    this.needsHello = flags.needsHello;
    this.needsProtocol = flags.needsProtocol;
  }

  static compile(specs: readonly RouteSpec[]): RouteTable {
    const routes: CompiledRoute[] = [];
    const exact = new Map<string, number[]>();
    const wild = new Map<string, number[]>();
    const anyName: number[] = [];
    let wildMin = Infinity;
    let wildMax = 0;
    let needsHello = false;
    let needsProtocol = false;
    specs.forEach((spec, index) => {
      const m = spec.match;
      routes.push({
        result: Object.freeze({ index, label: spec.name ?? String(index), pool: spec.pool }),
        alpn: m?.alpn ? new Set(m.alpn) : null,
        protocol: m?.protocol ? new Set(m.protocol) : null,
        ports: m?.destination_port ? new Set(m.destination_port) : null,
        source: m?.source ? new SourceMatcher(m.source) : null,
      });
      if (m?.sni || m?.alpn) needsHello = true;
      if (m?.protocol) needsProtocol = true;
      if (!m?.sni) {
        anyName.push(index);
        return;
      }
      for (const pattern of m.sni) {
        const p = normalizeName(pattern);
        if (p.startsWith('*.') && p.length > 2) {
          const suffix = p.slice(2);
          append(wild, suffix, index);
          wildMin = Math.min(wildMin, suffix.length);
          wildMax = Math.max(wildMax, suffix.length);
        } else {
          append(exact, p, index);
        }
      }
    });
    return new RouteTable(routes, exact, wild, anyName, wildMin, wildMax, { needsHello, needsProtocol });
  }

  /** The first route (lowest index) all of whose conditions hold, or null. */
  match(facts: RouteFacts): RouteMatch | null {
    // The answer is the least index, over the candidate lists, of each list's first route whose other conditions hold.
    let best = this.firstHolding(this.anyName, facts, this.routes.length);
    if (facts.sni !== null && (this.exact.size > 0 || this.wild.size > 0)) {
      const name = normalizeName(facts.sni);
      best = this.firstHolding(this.exact.get(name), facts, best);
      if (this.wild.size > 0) {
        // "*.S" matches when name = X + "." + S with X non-empty: try each dot at position ≥ 1 whose suffix length could be a key.
        const from = Math.max(1, name.length - 1 - this.wildMax);
        const to = name.length - 1 - this.wildMin;
        for (let dot = name.indexOf('.', from); dot >= 0 && dot <= to; dot = name.indexOf('.', dot + 1)) {
          best = this.firstHolding(this.wild.get(name.slice(dot + 1)), facts, best);
        }
      }
    }
    return best < this.routes.length ? this.routes[best]!.result : null;
  }

  /** Routes whose conditions were checked, over every match() so far: what a match costs, for tests. */
  examined = 0;

  /** The first index in `list` below `bound` whose non-SNI conditions hold, else `bound`. */
  private firstHolding(list: IndexList | undefined, facts: RouteFacts, bound: number): number {
    if (list === undefined) return bound;
    for (let i = 0; i < list.length; i++) {
      const index = list[i]!;
      if (index >= bound) return bound;
      this.examined++;
      if (holds(this.routes[index]!, facts)) return index;
    }
    return bound;
  }
}

function holds(r: CompiledRoute, facts: RouteFacts): boolean {
  if (r.alpn !== null && !offersAny(facts.alpn, r.alpn)) return false;
  if (r.protocol !== null && (facts.protocol === null || !r.protocol.has(facts.protocol))) return false;
  if (r.ports !== null && !r.ports.has(facts.destinationPort)) return false;
  if (r.source !== null && !r.source.has(facts.source)) return false;
  return true;
}

function offersAny(offered: readonly string[], wanted: ReadonlySet<string>): boolean {
  for (let i = 0; i < offered.length; i++) if (wanted.has(offered[i]!)) return true;
  return false;
}

/** Lower-case, one trailing dot dropped. */
function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** Add `index` to the list under `key`; indexes come in ascending order, so the list stays sorted. */
function append(map: Map<string, number[]>, key: string, index: number): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [index]);
  else if (list[list.length - 1] !== index) list.push(index);
}

/** Client addresses against a route's `source` CIDRs. */
class SourceMatcher {
  private readonly list = new BlockList();

  constructor(cidrs: readonly string[]) {
    for (const text of cidrs) {
      const c = parseCidr(text);
      // Validated with the config; an invalid entry (unreachable) matches nothing rather than throwing.
      if (typeof c !== 'string') this.list.addSubnet(c[0].toString(), c[1], c[0].kind());
    }
  }

  /** `ip` is canonical (IPv4-mapped IPv6 already folded); text that is not an address matches nothing. */
  has(ip: string): boolean {
    return this.list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  }
}
