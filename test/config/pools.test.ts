/**
 * Pools and routes in the config (SPEC §9): the §3 form becomes an implicit
 * pool of the frontend's name; `pool:` and `routes:` name explicit pools;
 * placement keys belong to pools; routes are checked (default last, known
 * pools, valid names and CIDRs); compiled plans peek only what they need.
 * Every message verbatim.
 */
import t from 'tap';
import { compile } from '../../src/config/compile';
import { ok, errors } from '../util/config';

const b = (name: string, port: number) => ({ name, address: `127.0.0.1:${port}` });


const pools = () => [
  { name: 'pg', affinity: { key: 'sni' }, backends: [b('pg1', 5001), b('pg2', 5002)] },
  { name: 'ldap', backends: [b('l1', 6001)] },
];

t.test('the §3 form is an implicit pool named after its frontend', async (t) => {
  const c = ok({ frontends: [{ name: 'redis', listen: '127.0.0.1:7000', timeouts: { connect: '500ms' }, retries: 1, backends: [b('r1', 7001)] }] });
  t.equal(c.frontends[0]!.pool, 'redis');
  t.equal(c.frontends[0]!.routes, null);
  t.equal(c.pools.length, 1);
  const p = c.pools[0]!;
  t.equal(p.name, 'redis');
  t.equal(p.implicitOf, 'redis');
  t.equal(p.at, 'frontends[0]');
  t.same(p.timeouts, { connect: 500, idle: 3_600_000 }, 'connect and idle go to the pool');
  t.equal(p.retries, 1);
  t.equal(p.backends[0]!.name, 'r1');
  t.same(c.frontends[0]!.timeouts, { connect: 500, idle: 3_600_000, handshake: 5000 }, 'the frontend reads as before');
  const plan = compile(c);
  t.equal(plan.pools.get('redis')!.tableId, 'frontend:redis', 'a §3 table keeps its id (stores and snapshots carry over)');
  t.same(plan.frontends[0]!.peek, { hello: false, protocol: false });
  t.equal(plan.frontends[0]!.peeks, false, 'source_ip: no peek');
});

t.test('pool: and routes: name explicit pools', async (t) => {
  const c = ok({
    pools: pools(),
    frontends: [
      {
        name: 'tls',
        listen: '127.0.0.1:443',
        routes: [
          { name: 'db', match: { sni: ['DB.Example.com.', '*.pg.example.com'] }, pool: 'pg' },
          { match: { sni: 'ldap.example.com', source: ['10.0.0.0/8'], destination_port: 443 }, pool: 'ldap' },
          { pool: 'ldap' },
        ],
      },
      { name: 'pg-direct', listen: '127.0.0.1:5432', pool: 'pg' },
    ],
  });
  t.same(c.pools.map((p) => [p.name, p.implicitOf, p.at]), [
    ['pg', null, 'pools[0]'],
    ['ldap', null, 'pools[1]'],
  ]);
  const [tls, direct] = c.frontends;
  t.same(tls!.routes![0]!.match!.sni, ['db.example.com', '*.pg.example.com'], 'names are lower-cased, a trailing dot dropped');
  t.same(tls!.routes![1]!.match!.sni, ['ldap.example.com'], 'one value is a list of one');
  t.same(tls!.routes![1]!.match!.destination_port, [443]);
  t.equal(direct!.pool, 'pg');
  const plan = compile(c);
  t.same(plan.frontends[0]!.pools, ['pg', 'ldap']);
  t.same(plan.frontends[0]!.peek, { hello: true, protocol: false }, 'sni routes: the hello is read');
  t.same(plan.frontends[1]!.peek, { hello: true, protocol: false }, 'a pool keyed by sni: the hello is read');
  t.equal(plan.pools.get('pg')!.tableId, 'pool:pg');
  t.equal(plan.frontends[0]!.routes!.match({ sni: 'a.pg.example.com', alpn: [], source: '192.0.2.1', protocol: 'tls', destinationPort: 443 })!.label, 'db');
  t.equal(plan.frontends[0]!.routes!.match({ sni: 'x.example.com', alpn: [], source: '192.0.2.1', protocol: 'tls', destinationPort: 443 })!.label, '2', 'an unnamed route is labelled by its index');
});

t.test('what a pool-less frontend may not say, verbatim', async (t) => {
  t.same(errors({ pools: pools(), frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'pg', affinity: { key: 'source_ip' }, retries: 3, timeouts: { connect: '1s', handshake: '2s' } }] }), [
    { path: 'frontends[0].affinity', message: 'belongs to the pool: set it on pool "pg"' },
    { path: 'frontends[0].retries', message: 'belongs to the pool: set it on pool "pg"' },
    { path: 'frontends[0].timeouts.connect', message: 'belongs to the pool: set it on pool "pg"' },
  ]);
  t.same(errors({ pools: pools(), frontends: [{ name: 'x', listen: '127.0.0.1:1', routes: [{ pool: 'pg' }], health_check: {} }] }), [
    { path: 'frontends[0].health_check', message: 'belongs to the pool: set it on the pools its routes name' },
  ]);
  t.same(errors({ pools: pools(), frontends: [{ name: 'x', listen: '127.0.0.1:1' }] }), [
    { path: 'frontends[0].backends', message: 'required: give backends (its own pool), pool (a pool by name) or routes' },
  ]);
  t.same(errors({ pools: pools(), frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'pg', backends: [b('a', 1)] }] }), [
    { path: 'frontends[0].pool', message: 'give one of backends, pool and routes (this frontend also has backends)' },
  ]);
});

t.test('pool names, verbatim', async (t) => {
  t.same(errors({ pools: pools(), frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'pgg' }] }), [
    { path: 'frontends[0].pool', message: 'no pool named "pgg" (pools: pg, ldap)' },
  ]);
  t.same(errors({ frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'pg' }] }), [
    { path: 'frontends[0].pool', message: 'no pool named "pg" (there is no pools: section)' },
  ]);
  t.same(
    errors({
      frontends: [
        { name: 'a', listen: '127.0.0.1:1', backends: [b('a1', 2)] },
        { name: 'c', listen: '127.0.0.1:3', pool: 'a' },
      ],
    }),
    [{ path: 'frontends[1].pool', message: '"a" is the implicit pool of frontends[0] (a); move its backends to pools: to share it' }],
  );
  t.same(errors({ pools: pools(), frontends: [{ name: 'pg', listen: '127.0.0.1:1', backends: [b('a', 2)] }] }), [
    { path: 'frontends[0].name', message: '"pg" is also the name of pools[0]; a frontend with its own backends has an implicit pool of its name' },
  ]);
  t.same(errors({ pools: [...pools(), { name: 'pg', backends: [b('z', 9)] }], frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'pg' }] }), [
    { path: 'pools[2].name', message: 'duplicate pool name "pg" (also pools[0])' },
  ]);
  t.same(errors({ pools: [{ name: 'p', backends: [b('a', 1), b('a', 2)] }], frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'p' }] }), [
    { path: 'pools[0].backends[1].name', message: 'duplicate backend name "a" (also pools[0].backends[0])' },
  ]);
  t.same(errors({ pools: [{ name: 'p', timeouts: { handshake: '1s' }, backends: [b('a', 1)] }], frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'p' }] }), [
    { path: 'pools[0].timeouts.handshake', message: 'unknown key' },
  ]);
  t.same(errors({ pools: [{ name: 'p', affinity: { key: 'none' }, balance: { algorithm: 'consistent_hash' }, backends: [b('a', 1)] }], frontends: [{ name: 'x', listen: '127.0.0.1:1', pool: 'p' }] }), [
    { path: 'pools[0].balance.algorithm', message: 'consistent_hash needs an affinity key; with affinity.key "none" use round_robin or least_conn' },
  ]);
});

t.test('routes, verbatim', async (t) => {
  const fe = (routes: unknown) => ({ pools: pools(), frontends: [{ name: 'x', listen: '127.0.0.1:1', routes }] });
  t.same(errors(fe([{ pool: 'pg' }, { match: { sni: 'a.example.com' }, pool: 'ldap' }])), [
    { path: 'frontends[0].routes[0]', message: 'a route without match is the default and must be last' },
  ]);
  t.same(errors(fe([{ match: {}, pool: 'pg' }])), [{ path: 'frontends[0].routes[0].match', message: 'give at least one condition (a route without match is the default)' }]);
  t.same(errors(fe([{ match: { sni: 'a.example.com' }, pool: 'nope' }])), [{ path: 'frontends[0].routes[0].pool', message: 'no pool named "nope" (pools: pg, ldap)' }]);
  t.same(errors(fe([{ name: 'r', match: { sni: 'a.b' }, pool: 'pg' }, { name: 'r', pool: 'pg' }])), [
    { path: 'frontends[0].routes[1].name', message: 'duplicate route name "r" (also frontends[0].routes[0])' },
  ]);
  const bad = errors(
    fe([
      {
        match: { sni: ['ok.example.com', 'bad name', '*.', 'a.*.b'], source: ['10.0.0.0/33'], protocol: 'smtp', destination_port: [0, 443], alpn: [], colour: 'red' },
        pool: 'pg',
      },
    ]),
  );
  t.same(
    bad.map((e) => `${e.path}: ${e.message}`).sort(),
    [
      'frontends[0].routes[0].match.alpn: at least one value',
      'frontends[0].routes[0].match.colour: unknown key',
      'frontends[0].routes[0].match.destination_port[0]: Too small: expected number to be >=1',
      'frontends[0].routes[0].match.protocol[0]: Invalid option: expected one of "tls"|"ssh"|"http"|"other"',
      'frontends[0].routes[0].match.sni[1]: invalid server name "bad name" (expected a DNS name or *.suffix)',
      'frontends[0].routes[0].match.sni[2]: invalid server name "*." (expected a DNS name or *.suffix)',
      'frontends[0].routes[0].match.sni[3]: invalid server name "a.*.b" (expected a DNS name or *.suffix)',
      'frontends[0].routes[0].match.source[0]: invalid CIDR "10.0.0.0/33"',
    ],
  );
  const plan = compile(ok(fe([{ match: { protocol: ['ssh'] }, pool: 'ldap' }, { match: { source: '10.0.0.0/8' }, pool: 'ldap' }, { pool: 'pg' }])));
  t.same(plan.frontends[0]!.peek, { hello: true, protocol: true }, 'protocol routes sniff; the default pool is keyed by sni, so the hello is read too');
  const noPeek = compile(ok(fe([{ match: { source: '10.0.0.0/8', destination_port: 5432 }, pool: 'ldap' }, { pool: 'ldap' }])));
  t.equal(noPeek.frontends[0]!.peeks, false, 'source and destination_port routes to a source_ip pool: nothing to read');
});

t.test('shared tables across pools', async (t) => {
  const c = {
    pools: [
      { name: 'a', persistence: { table: 'shared', ttl: '1m' }, backends: [b('x', 1)] },
      { name: 'b', persistence: { table: 'shared', ttl: '2m' }, backends: [b('x', 1)] },
    ],
    frontends: [{ name: 'f', listen: '127.0.0.1:1', routes: [{ match: { source: '10.0.0.0/8' }, pool: 'a' }, { pool: 'b' }] }],
  };
  t.same(errors(c), [{ path: 'pools[1].persistence.ttl', message: 'differs from pools[0] (a), which shares table "shared"' }]);
  c.pools[1]!.persistence.ttl = '1m';
  const plan = compile(ok(c));
  t.equal(plan.pools.get('a')!.tableId, 'table:shared');
  t.equal(plan.pools.get('b')!.tableId, 'table:shared');
});
