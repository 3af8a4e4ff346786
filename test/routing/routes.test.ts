/**
 * RouteTable (SPEC §9 routes): a table of cases for each condition, first
 * match wins and the default route; a property test against a naive linear
 * matcher written here from the spec's words, over thousands of random route
 * sets whose names collide on purpose; and 1,000 SNI routes costing about
 * what 10 do.
 */
import t from 'tap';
import ipaddr from 'ipaddr.js';
import { RouteTable, type RouteFacts, type RouteMatch, type RouteSpec } from '../../src/routing/routes';
import type { Protocol } from '../../src/routing/sniff';
import { rng } from '../util/random';

type Match = NonNullable<RouteSpec['match']>;

const route = (match: Match | null, pool = 'p', name: string | null = null): RouteSpec => ({ name, pool, match });
const FACTS: RouteFacts = { sni: null, alpn: [], source: '10.1.2.3', protocol: null, destinationPort: 443 };
const facts = (f: Partial<RouteFacts>): RouteFacts => ({ ...FACTS, ...f });

// ------------------------------------------------------------ the table

t.test('route cases', async (t) => {
  const web = route(null, 'web', 'default');
  const cases: [string, RouteSpec[], Partial<RouteFacts>, string | null][] = [
    // what, routes, facts, label of the route taken (null: none)
    ['exact name', [route({ sni: ['db.example.com'] }, 'pg', 'db'), web], { sni: 'db.example.com' }, 'db'],
    ['exact name, another name', [route({ sni: ['db.example.com'] }, 'pg', 'db'), web], { sni: 'dc.example.com' }, 'default'],
    ['case-insensitive, both sides', [route({ sni: ['DB.Example.COM'] }, 'pg', 'db'), web], { sni: 'db.EXAMPLE.com' }, 'db'],
    ['a trailing dot on the name', [route({ sni: ['db.example.com'] }, 'pg', 'db'), web], { sni: 'db.example.com.' }, 'db'],
    ['a trailing dot on the pattern', [route({ sni: ['db.example.com.', '*.pg.example.com.'] }, 'pg', 'db'), web], { sni: 'x.pg.example.com' }, 'db'],
    ['only one trailing dot is ignored', [route({ sni: ['db.example.com'] }, 'pg', 'db'), web], { sni: 'db.example.com..' }, 'default'],
    ['wildcard, one label', [route({ sni: ['*.pg.example.com'] }, 'pg', 'pg'), web], { sni: 'a.pg.example.com' }, 'pg'],
    ['wildcard, several labels', [route({ sni: ['*.pg.example.com'] }, 'pg', 'pg'), web], { sni: 'a.b.c.pg.example.com' }, 'pg'],
    ['wildcard, not the bare suffix', [route({ sni: ['*.pg.example.com'] }, 'pg', 'pg'), web], { sni: 'pg.example.com' }, 'default'],
    ['wildcard, only at a label boundary', [route({ sni: ['*.example.com'] }, 'pg', 'pg'), web], { sni: 'badexample.com' }, 'default'],
    ['wildcard, not an empty label', [route({ sni: ['*.example.com'] }, 'pg', 'pg'), web], { sni: '.example.com' }, 'default'],
    ['wildcard, case and trailing dot', [route({ sni: ['*.Example.com'] }, 'pg', 'pg'), web], { sni: 'A.B.EXAMPLE.COM.' }, 'pg'],
    ['"*" alone is a literal name, not a wildcard', [route({ sni: ['*'] }, 'pg', 'pg'), web], { sni: 'a' }, 'default'],
    ['an sni route needs an SNI', [route({ sni: ['*.com', 'db.example.com'] }, 'pg', 'pg'), web], { sni: null }, 'default'],
    ['alpn: any of the listed is offered', [route({ alpn: ['h2', 'h3'] }, 'h2', 'h2'), web], { alpn: ['http/1.1', 'h2'] }, 'h2'],
    ['alpn: none of them offered', [route({ alpn: ['h2'] }, 'h2', 'h2'), web], { alpn: ['http/1.1'] }, 'default'],
    ['alpn: nothing offered', [route({ alpn: ['h2'] }, 'h2', 'h2'), web], { alpn: [] }, 'default'],
    ['alpn: protocol names are exact bytes (case counts)', [route({ alpn: ['h2'] }, 'h2', 'h2'), web], { alpn: ['H2'] }, 'default'],
    ['source: IPv4 CIDR', [route({ source: ['10.0.0.0/8'] }, 'in', 'in'), web], { source: '10.200.3.4' }, 'in'],
    ['source: outside the IPv4 CIDR', [route({ source: ['10.0.0.0/8'] }, 'in', 'in'), web], { source: '11.0.0.1' }, 'default'],
    ['source: a single IPv4 address', [route({ source: ['192.0.2.7'] }, 'in', 'in'), web], { source: '192.0.2.7' }, 'in'],
    ['source: the next address', [route({ source: ['192.0.2.7'] }, 'in', 'in'), web], { source: '192.0.2.8' }, 'default'],
    ['source: IPv6 CIDR', [route({ source: ['10.0.0.0/8', '2001:db8::/32'] }, 'in', 'in'), web], { source: '2001:db8:5::1' }, 'in'],
    ['source: outside the IPv6 CIDR', [route({ source: ['2001:db8::/32'] }, 'in', 'in'), web], { source: '2001:db9::1' }, 'default'],
    ['source: a single IPv6 address', [route({ source: ['::1'] }, 'in', 'in'), web], { source: '::1' }, 'in'],
    ['source: an IPv4 client, an IPv6 CIDR', [route({ source: ['2001:db8::/32'] }, 'in', 'in'), web], { source: '10.1.2.3' }, 'default'],
    ['source: an IPv4-mapped CIDR covers the folded IPv4 client', [route({ source: ['::ffff:10.0.0.0/104'] }, 'in', 'in'), web], { source: '10.9.9.9' }, 'in'],
    // node:net BlockList (as allow/deny in proxy/admission.ts) sees an IPv4 client as ::ffff:a.b.c.d, which ::/0 covers
    ['source: ::/0 covers IPv4 clients too (BlockList, as allow/deny)', [route({ source: ['::/0'] }, 'in', 'in'), web], { source: '10.1.2.3' }, 'in'],
    ['source: 0.0.0.0/0 does not cover IPv6 clients', [route({ source: ['0.0.0.0/0'] }, 'in', 'in'), web], { source: '2001:db8::1' }, 'default'],
    ['source: text that is not an address matches nothing', [route({ source: ['0.0.0.0/0', '::/0'] }, 'in', 'in'), web], { source: 'not-an-ip' }, 'default'],
    ['protocol', [route({ protocol: ['ssh'] }, 'ssh', 'ssh'), route({ protocol: ['tls', 'http'] }, 'web', 'tls'), web], { protocol: 'http' }, 'tls'],
    ['protocol: not sniffed never matches', [route({ protocol: ['ssh', 'tls', 'http', 'other'] }, 'ssh', 'ssh'), web], { protocol: null }, 'default'],
    ['destination_port: in the list', [route({ destination_port: [443, 8443] }, 'tls', 'tls'), web], { destinationPort: 8443 }, 'tls'],
    ['destination_port: not in the list', [route({ destination_port: [443, 8443] }, 'tls', 'tls'), web], { destinationPort: 80 }, 'default'],
    ['all conditions hold', [route({ sni: ['ldap.example.com'], source: ['10.0.0.0/8'], alpn: ['ldap'], destination_port: [636] }, 'ldap', 'ldap'), web], { sni: 'ldap.example.com', source: '10.0.0.1', alpn: ['ldap'], destinationPort: 636 }, 'ldap'],
    ['one condition fails: the next route', [route({ sni: ['ldap.example.com'], source: ['10.0.0.0/8'] }, 'ldap', 'ldap'), route({ sni: ['*.example.com'] }, 'any', 'any'), web], { sni: 'ldap.example.com', source: '192.168.0.1' }, 'any'],
    ['first match wins: a wildcard before an exact name', [route({ sni: ['*.example.com'] }, 'w', 'wild'), route({ sni: ['db.example.com'] }, 'e', 'exact')], { sni: 'db.example.com' }, 'wild'],
    ['first match wins: an exact name before a wildcard', [route({ sni: ['db.example.com'] }, 'e', 'exact'), route({ sni: ['*.example.com'] }, 'w', 'wild')], { sni: 'db.example.com' }, 'exact'],
    ['first match wins: no sni condition before an sni route', [route({ source: ['10.0.0.0/8'] }, 'src', 'src'), route({ sni: ['db.example.com'] }, 'e', 'exact')], { sni: 'db.example.com' }, 'src'],
    ['the longer wildcard, listed later, loses', [route({ sni: ['*.com'] }, 'com', 'com'), route({ sni: ['*.example.com'] }, 'ex', 'ex')], { sni: 'a.example.com' }, 'com'],
    ['an earlier wildcard whose other condition fails', [route({ sni: ['*.com'], alpn: ['h2'] }, 'com', 'com'), route({ sni: ['*.example.com'] }, 'ex', 'ex')], { sni: 'a.example.com' }, 'ex'],
    ['the default route', [route({ sni: ['db.example.com'] }, 'pg'), web], { sni: 'x.org' }, 'default'],
    ['no route matches and no default', [route({ sni: ['db.example.com'] }, 'pg'), route({ protocol: ['ssh'] }, 'ssh')], { sni: 'x.org', protocol: 'tls' }, null],
    ['no routes at all', [], { sni: 'x.org' }, null],
    ['an empty condition list holds for nobody', [route({ sni: [] }, 'a', 'a'), route({ alpn: [] }, 'b', 'b'), route({ source: [] }, 'c', 'c'), web], { sni: 'x', alpn: ['h2'] }, 'default'],
    ['an unnamed route is labelled by its index', [route({ sni: ['a.com'] }, 'a'), route({ sni: ['db.example.com'] }, 'pg')], { sni: 'db.example.com' }, '1'],
  ];
  for (const [what, routes, f, want] of cases) {
    const got = RouteTable.compile(routes).match(facts(f));
    t.equal(got === null ? null : got.label, want, what);
    if (got !== null) t.equal(got.pool, routes[got.index]!.pool, `${what}: the route's pool`);
  }
});

t.test('the match is the route: index, label, pool', async (t) => {
  const table = RouteTable.compile([route({ sni: ['a.com'] }, 'a', 'first'), route({ sni: ['*.b.com', 'x.b.com'] }, 'b'), route(null, 'web')]);
  t.same(table.match(facts({ sni: 'x.b.com' })), { index: 1, label: '1', pool: 'b' }, 'a route listed under two patterns');
  t.same(table.match(facts({ sni: 'a.com' })), { index: 0, label: 'first', pool: 'a' });
  t.same(table.match(facts({})), { index: 2, label: '2', pool: 'web' });
  t.equal(table.match(facts({ sni: 'a.com' })), table.match(facts({ sni: 'A.com.' })), 'the same frozen object every time');
  t.ok(Object.isFrozen(table.match(facts({}))));
});

t.test('what the frontend must peek', async (t) => {
  const peeks = (routes: RouteSpec[]): [boolean, boolean] => {
    const table = RouteTable.compile(routes);
    return [table.needsHello, table.needsProtocol];
  };
  t.same(peeks([]), [false, false], 'no routes');
  t.same(peeks([route(null)]), [false, false], 'a default route only');
  t.same(peeks([route({ source: ['10.0.0.0/8'], destination_port: [443] }), route(null)]), [false, false], 'source and port need no client bytes');
  t.same(peeks([route({ sni: ['a.com'] })]), [true, false], 'sni');
  t.same(peeks([route({ alpn: ['h2'] })]), [true, false], 'alpn');
  t.same(peeks([route({ protocol: ['ssh'] }), route(null)]), [false, true], 'protocol');
  t.same(peeks([route({ protocol: ['ssh'] }), route({ sni: ['a.com'] })]), [true, true], 'both');

  const many = Array.from({ length: 1_000 }, (_, i) => route({ sni: [i % 2 ? `host${i}.example.com` : `*.zone${i}.example.com`] }, `pool${i % 7}`, `r${i}`));
  const table = RouteTable.compile([...many, route(null, 'web')]);
  t.equal(table.size, 1_001);
  t.equal(table.needsHello, true);
  t.equal(table.needsProtocol, false);
  t.same(table.match(facts({ sni: 'host999.example.com' })), { index: 999, label: 'r999', pool: `pool${999 % 7}` });
  t.same(table.match(facts({ sni: 'a.b.zone998.example.com' })), { index: 998, label: 'r998', pool: `pool${998 % 7}` });
  t.same(table.match(facts({ sni: 'zone998.example.com' })), { index: 1_000, label: '1000', pool: 'web' });
  const withSsh = RouteTable.compile([...many, route({ protocol: ['ssh'] }, 'ssh')]);
  t.same([withSsh.needsHello, withSsh.needsProtocol], [true, true]);
});

t.test('1,000 SNI routes cost about what 10 do', async (t) => {
  const build = (n: number): RouteTable =>
    RouteTable.compile([
      ...Array.from({ length: n }, (_, i) => route({ sni: [i % 2 ? `host${i}.example.com` : `*.zone${i}.example.com`], ...(i % 3 ? {} : { alpn: ['h2'] }) }, `pool${i}`)),
      route(null, 'web'),
    ]);
  // The cost of a match is the routes whose conditions it checks: with hash tables for names it does not
  // grow with the number of routes (a linear scan would check up to all of them).
  const cost = (table: RouteTable, n: number): number[] =>
    [
      facts({ sni: `host${n - 1}.example.com` }), // the last exact route
      facts({ sni: `a.b.zone${n - 2}.example.com`, alpn: ['h2'] }), // the last wildcard route (alpn h2 only on some)
      facts({ sni: 'nowhere.example.org' }), // the default
      facts({ sni: null }),
    ].map((f) => {
      const before = table.examined;
      t.ok(table.match(f) !== null, `${n} routes: ${f.sni ?? '(no sni)'} matches a route`);
      return table.examined - before;
    });
  const small = cost(build(10), 10);
  const large = cost(build(1_000), 1_000);
  t.same(large, small, `routes checked per match: ${large.join(', ')} with 1,000 routes, ${small.join(', ')} with 10`);
  t.ok(Math.max(...large) <= 3, 'at most 3 routes checked for any of these');
});

// ------------------------------------------------------------ the property

/** SPEC §9 read literally: a linear scan, each condition an any-of over its list. */
function referenceMatch(routes: readonly RouteSpec[], f: RouteFacts): RouteMatch | null {
  for (let index = 0; index < routes.length; index++) {
    const r = routes[index]!;
    const m = r.match;
    const ok =
      m === null ||
      ((m.sni === undefined || (f.sni !== null && m.sni.some((p) => nameMatches(p, f.sni!)))) &&
        (m.alpn === undefined || m.alpn.some((p) => f.alpn.includes(p))) &&
        (m.source === undefined || m.source.some((c) => inCidr(f.source, c))) &&
        (m.protocol === undefined || (f.protocol !== null && m.protocol.includes(f.protocol))) &&
        (m.destination_port === undefined || m.destination_port.includes(f.destinationPort)));
    if (ok) return { index, label: r.name ?? String(index), pool: r.pool };
  }
  return null;
}

function canonName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** `*.suffix`: the name ends in `.suffix` with something before it; anything else: equal. */
function nameMatches(pattern: string, name: string): boolean {
  const p = canonName(pattern);
  const n = canonName(name);
  if (p.startsWith('*.') && p.length > 2) {
    const dotSuffix = p.slice(1);
    return n.endsWith(dotSuffix) && n.length > dotSuffix.length;
  }
  return p === n;
}

function inCidr(ip: string, cidr: string): boolean {
  const addr = ipaddr.parse(ip);
  const [net, bits] = cidr.includes('/') ? ipaddr.parseCIDR(cidr) : [ipaddr.parse(cidr), cidr.includes(':') ? 128 : 32];
  if (addr.kind() !== net.kind()) return false;
  return addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).match(net as ipaddr.IPv4, bits) : (addr as ipaddr.IPv6).match(net as ipaddr.IPv6, bits);
}

t.test('property: RouteTable.match agrees with a linear reference matcher', async (t) => {
  const random = rng(0x7047e5);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const some = <T>(xs: readonly T[], max = xs.length): T[] => Array.from({ length: 1 + int(max) }, () => pick(xs));
  // A small alphabet, so that names, wildcards and suffixes collide often.
  const LABELS = ['a', 'b', 'db', 'x-1'];
  const TLDS = ['com', 'org'];
  const ALPN = ['h2', 'http/1.1', 'postgresql', 'H2'];
  const CIDRS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3', '192.168.0.0/24', '2001:db8::/32', '2001:db8:1::/48', '::1', '0.0.0.0/0'];
  const SOURCES = ['10.1.2.3', '10.1.9.9', '10.2.0.1', '192.168.0.7', '172.16.0.1', '2001:db8::5', '2001:db8:1::9', '::1', 'fe80::1'];
  const PROTOCOLS: readonly Protocol[] = ['tls', 'ssh', 'http', 'other'];
  const PORTS = [443, 8443, 5432, 80];
  const ODD_NAMES = ['', '.', '.a.com', 'a..com', 'A.COM..', 'com', '*.com', 'A.B.DB.COM.'];
  const shout = (s: string): string => (random() < 0.2 ? s.toUpperCase() : s);
  const dot = (s: string): string => (random() < 0.15 ? `${s}.` : s);
  const labels = (min: number, max: number): string => Array.from({ length: min + int(max - min + 1) }, () => pick(LABELS)).join('.');
  const host = (): string => [labels(1, 3), pick(TLDS)].join('.');
  const pattern = (): string => {
    if (random() < 0.55) return dot(shout(host()));
    const rest = random() < 0.2 ? pick(TLDS) : `${labels(1, 2)}.${pick(TLDS)}`;
    return dot(shout(`*.${rest}`));
  };

  const randomRoutes = (): RouteSpec[] => {
    const n = 1 + int(12);
    const routes: RouteSpec[] = [];
    for (let i = 0; i < n; i++) {
      const m: { -readonly [K in keyof Match]: Match[K] } = {};
      if (random() < 0.65) m.sni = random() < 0.02 ? [] : some(Array.from({ length: 4 }, pattern), 3);
      if (random() < 0.2) m.alpn = some(ALPN, 2);
      if (random() < 0.2) m.source = some(CIDRS, 2);
      if (random() < 0.15) m.protocol = some(PROTOCOLS, 2);
      if (random() < 0.15) m.destination_port = some(PORTS, 2);
      const isDefault = i === n - 1 && random() < 0.3;
      routes.push(route(isDefault ? null : m, `pool${int(3)}`, random() < 0.3 ? `r${i}` : null));
    }
    return routes;
  };

  const randomFacts = (routes: readonly RouteSpec[]): RouteFacts => {
    let sni: string | null = null;
    const roll = random();
    const patterns = routes.flatMap((r) => r.match?.sni ?? []);
    if (roll < 0.5 && patterns.length > 0) {
      // a name near a pattern of this set: the pattern itself, an instance of a wildcard, or its bare suffix
      const p = pick(patterns);
      if (p.startsWith('*.')) sni = random() < 0.25 ? p.slice(2) : `${labels(1, 2)}${p.slice(1)}`;
      else sni = p;
      sni = dot(shout(sni));
    } else if (roll < 0.8) sni = dot(shout(host()));
    else if (roll < 0.9) sni = pick(ODD_NAMES);
    return {
      sni,
      alpn: random() < 0.3 ? [] : some(ALPN, 3),
      source: pick(SOURCES),
      protocol: random() < 0.2 ? null : pick(PROTOCOLS),
      destinationPort: pick(PORTS),
    };
  };

  const SETS = 2_500;
  const FACTS_PER_SET = 50;
  const failures: string[] = [];
  let matched = 0;
  let viaSni = 0;
  let none = 0;
  for (let s = 0; s < SETS && failures.length < 5; s++) {
    const routes = randomRoutes();
    const table = RouteTable.compile(routes);
    if (table.size !== routes.length) failures.push(`set ${s}: size ${table.size}`);
    const hello = routes.some((r) => r.match?.sni !== undefined || r.match?.alpn !== undefined);
    const proto = routes.some((r) => r.match?.protocol !== undefined);
    if (table.needsHello !== hello || table.needsProtocol !== proto) failures.push(`set ${s}: needs ${table.needsHello}/${table.needsProtocol}`);
    for (let k = 0; k < FACTS_PER_SET; k++) {
      const f = randomFacts(routes);
      const got = table.match(f);
      const want = referenceMatch(routes, f);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        failures.push(`set ${s}: ${JSON.stringify(routes)} facts ${JSON.stringify(f)}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
        break;
      }
      if (want === null) none++;
      else {
        matched++;
        if (routes[want.index]!.match?.sni !== undefined) viaSni++;
      }
    }
  }
  const total = SETS * FACTS_PER_SET;
  t.same(failures, [], `${SETS} route sets × ${FACTS_PER_SET} facts: ${matched} matched (${viaSni} by an sni route), ${none} no route`);
  t.ok(viaSni > total / 10 && none > total / 20 && matched - viaSni > total / 10, 'the random sets reach sni matches, other matches and no match');
});
