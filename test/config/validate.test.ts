/**
 * Config validation (SPEC §3, STYLE habit 6): defaults from one table,
 * unknown keys rejected with their path, every error reported together with
 * its exact path and message, `off` as YAML `false`, a deep-frozen result;
 * and the small parsers (durations, host:port, CIDR) on their own.
 */
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { validate, formatPath } from '../../src/config/validate';
import { parseDuration, parseHostPort, parseCidr, formatHostPort } from '../../src/config/parse';
import { ConfigError, type ConfigIssue } from '../../src/errors';
import { ok, errors } from '../util/config';

/** A minimal valid config; `fe` is merged into the one frontend. */
function minimal(fe: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    frontends: [
      {
        name: 'redis',
        listen: '127.0.0.1:7000',
        backends: [
          { name: 'r1', address: '127.0.0.1:7001' },
          { name: 'r2', address: '127.0.0.1:7002' },
        ],
        ...fe,
      },
    ],
  };
}


const byPath = (a: ConfigIssue, b: ConfigIssue) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.message < b.message ? -1 : 1);

t.test('defaults of SPEC §3', async (t) => {
  const config = ok(minimal());
  t.equal(config.admin, undefined, 'no admin block: no admin listener');
  t.same(config.log, { level: 'info' });
  t.equal(config.shutdown_grace, 30_000);
  const fe = config.frontends[0]!;
  t.same(fe.listen, [{ host: '127.0.0.1', port: 7000, family: 4, text: '127.0.0.1:7000' }], 'a string listen is a list of one');
  t.equal(fe.accept_proxy, 'off');
  t.same(fe.trusted_proxies, []);
  t.same(fe.allow, []);
  t.same(fe.deny, []);
  t.equal(fe.max_connections, 10_000);
  t.same(fe.affinity, { key: 'source_ip', ipv4_prefix: 32, ipv6_prefix: 128, fallback: 'source_ip' });
  t.has(fe.persistence, { ttl: 30 * 60_000, max_entries: 1_000_000 });
  t.has(fe.balance, { algorithm: 'consistent_hash', vnodes: 1000 });
  t.same(fe.timeouts, { connect: 2000, idle: 3_600_000, handshake: 5000 });
  t.equal(fe.retries, 2);
  t.same(fe.passive, { max_fails: 3, fail_timeout: 10_000 });
  t.equal(fe.send_proxy, 'off');
  t.equal(fe.health_check, undefined);
  t.has(fe.backends[0], { name: 'r1', weight: 1, backup: false, max_connections: 0 });
  t.equal(fe.backends[0]!.send_proxy, undefined, 'a backend send_proxy left unset inherits');
  t.same(fe.backends[0]!.address, { host: '127.0.0.1', port: 7001, family: 4, text: '127.0.0.1:7001' });

  const admin = ok({ ...minimal(), admin: {} }).admin!;
  t.same(admin.listen, { host: '127.0.0.1', port: 9100, family: 4, text: '127.0.0.1:9100' }, 'admin: {} listens on 127.0.0.1:9100');
  t.equal(admin.token, null);
});

t.test('given values are kept', async (t) => {
  const fe = ok(
    minimal({
      listen: ['127.0.0.1:7000', '[::1]:7000'],
      affinity: { ipv4_prefix: 24 },
      persistence: { ttl: '1h30m' },
      balance: { algorithm: 'least_conn', vnodes: 160 },
      timeouts: { connect: '500ms' },
    }),
  ).frontends[0]!;
  t.same(
    fe.listen.map((a) => [a.host, a.port, a.family]),
    [
      ['127.0.0.1', 7000, 4],
      ['::1', 7000, 6],
    ],
  );
  t.same(fe.affinity, { key: 'source_ip', ipv4_prefix: 24, ipv6_prefix: 128, fallback: 'source_ip' }, 'the rest of a block keeps its defaults');
  t.has(fe.persistence, { ttl: 5_400_000, max_entries: 1_000_000 });
  t.has(fe.balance, { algorithm: 'least_conn', vnodes: 160 });
  t.same(fe.timeouts, { connect: 500, idle: 3_600_000, handshake: 5000 });
});

t.test('unknown keys are errors, with their path', async (t) => {
  const input = {
    logging: { level: 'debug' },
    frontends: [
      {
        name: 'redis',
        listen: '127.0.0.1:7000',
        afinity: { key: 'none' },
        persistence: { ttl: '1m', max_entires: 5 },
        backends: [{ name: 'r1', address: '127.0.0.1:7001', wieght: 2 }],
      },
    ],
  };
  t.same(
    errors(input)
      .map((e) => `${e.path}: ${e.message}`)
      .sort(),
    [
      'frontends[0].afinity: unknown key',
      'frontends[0].backends[0].wieght: unknown key',
      'frontends[0].persistence.max_entires: unknown key',
      'logging: unknown key',
    ],
  );
});

t.test('every error is reported together, with exact paths and messages', async (t) => {
  const input = {
    frontends: [
      {
        name: 'redis',
        listen: '127.0.0.1:7000',
        allow: ['10.0.0.0/8', '10.0.0.0/33'],
        deny: ['10/8'],
        persistence: { ttl: '30 minutes' },
        timeouts: { connect: '2' },
        backends: [
          { name: 'r1', address: '127.0.0.1:99999' },
          { name: 'r1', address: 'db.internal:6379' },
          { name: 'r3', address: '127.0.0.1' },
          { name: 'r4', address: '10.0.0.1:6379', extra: true },
        ],
      },
      { name: 'redis', listen: '127.0.0.1:7100', backends: [{ name: 'x', address: '[::1]:6379' }] },
    ],
  };
  const want: ConfigIssue[] = [
    { path: 'frontends[0].allow[1]', message: 'invalid CIDR "10.0.0.0/33"' },
    { path: 'frontends[0].deny[0]', message: 'invalid CIDR "10/8"' },
    { path: 'frontends[0].persistence.ttl', message: 'invalid duration "30 minutes" (expected e.g. 500ms, 2s, 30m, 1h)' },
    { path: 'frontends[0].timeouts.connect', message: 'invalid duration "2" (expected e.g. 500ms, 2s, 30m, 1h)' },
    { path: 'frontends[0].backends[0].address', message: 'invalid port 99999 in "127.0.0.1:99999" (0..65535)' },
    { path: 'frontends[0].backends[1].name', message: 'duplicate backend name "r1" (also frontends[0].backends[0])' },
    { path: 'frontends[0].backends[1].address', message: 'invalid address "db.internal:6379": host must be an IP literal' },
    { path: 'frontends[0].backends[2].address', message: 'invalid address "127.0.0.1" (expected host:port or [v6]:port)' },
    { path: 'frontends[0].backends[3].extra', message: 'unknown key' },
    { path: 'frontends[1].name', message: 'duplicate frontend name "redis" (also frontends[0])' },
  ];
  t.same(errors(input).sort(byPath), want.sort(byPath));
});

t.test('errors of checks that need a parsed config', async (t) => {
  t.same(
    errors({
      frontends: [
        { ...(minimal().frontends as object[])[0]!, name: 'a' },
        { ...(minimal().frontends as object[])[0]!, name: 'b', listen: ['127.0.0.1:7001', '127.0.0.1:7000'] },
      ],
    }),
    [{ path: 'frontends[1].listen[1]', message: 'address 127.0.0.1:7000 is already used by frontends[0].listen[0]' }],
  );
  t.ok(ok({ frontends: [{ ...(minimal().frontends as object[])[0]!, listen: ['127.0.0.1:0', '127.0.0.1:0'] }] }), 'port 0 may repeat');
});

t.test('names, numbers and enums', async (t) => {
  const errs = errors(
    minimal({
      name: 'Redis Main',
      retries: -1,
      affinity: { key: 'cookie', ipv4_prefix: 33 },
      backends: [{ name: 'r1', address: '127.0.0.1:7001', weight: 257 }],
    }),
  );
  t.same(
    errs.map((e) => e.path).sort(),
    ['frontends[0].affinity.ipv4_prefix', 'frontends[0].affinity.key', 'frontends[0].backends[0].weight', 'frontends[0].name', 'frontends[0].retries'],
  );
  t.same(errs.find((e) => e.path === 'frontends[0].name')?.message, 'must match [a-z0-9_-]+');
  t.match(errs.find((e) => e.path === 'frontends[0].backends[0].weight')?.message, /256/, 'the weight bound is named');
  t.match(errs.find((e) => e.path === 'frontends[0].affinity.key')?.message, /source_ip/, 'the allowed keys are named');

  t.same(errors(minimal({ backends: [] })), [{ path: 'frontends[0].backends', message: 'at least one backend' }]);
  t.same(errors(minimal({ listen: [] })), [{ path: 'frontends[0].listen', message: 'at least one listen address' }]);
  t.same(errors({ frontends: [] }), [{ path: 'frontends', message: 'at least one frontend' }]);
  t.equal(errors(null)[0]!.path, '(root)');
  t.ok(ok(minimal({ backends: [{ name: 'r1', address: '127.0.0.1:7001', weight: 0 }, { name: 'r2', address: '127.0.0.1:7002', weight: 256 }] })), 'weights 0 and 256 are allowed');
});

t.test('affinity.key none: round_robin by default; consistent_hash is an error', async (t) => {
  t.equal(ok(minimal({ affinity: { key: 'none' } })).frontends[0]!.balance.algorithm, 'round_robin');
  t.equal(ok(minimal({ affinity: { key: 'none' }, balance: { algorithm: 'least_conn' } })).frontends[0]!.balance.algorithm, 'least_conn');
  t.same(errors(minimal({ affinity: { key: 'none' }, balance: { algorithm: 'consistent_hash' } })), [
    {
      path: 'frontends[0].balance.algorithm',
      message: 'consistent_hash needs an affinity key; with affinity.key "none" use round_robin or least_conn',
    },
  ]);
  t.equal(ok(minimal({ affinity: { key: 'source_ip' } })).frontends[0]!.balance.algorithm, 'consistent_hash');
});

t.test('off may be written as YAML false', async (t) => {
  const yaml = `
frontends:
  - name: redis
    listen: 127.0.0.1:7000
    accept_proxy: false
    send_proxy: false
    backends:
      - name: r1
        address: 127.0.0.1:7001
        send_proxy: false
      - name: r2
        address: 127.0.0.1:7002
        send_proxy: off
`;
  const raw = parseYaml(yaml);
  t.equal(raw.frontends[0].accept_proxy, false, 'the yaml package reads false as a boolean');
  const fe = ok(raw).frontends[0]!;
  t.equal(fe.accept_proxy, 'off');
  t.equal(fe.send_proxy, 'off');
  t.equal(fe.backends[0]!.send_proxy, 'off');
  t.equal(fe.backends[1]!.send_proxy, 'off');
  t.equal(errors(parseYaml(yaml.replace('accept_proxy: false', 'accept_proxy: true')))[0]!.path, 'frontends[0].accept_proxy', 'true is not a mode');
});

t.test('the result is deep-frozen', async (t) => {
  const config = ok(minimal({ allow: ['10.0.0.0/8'] }));
  const fe = config.frontends[0]!;
  for (const [label, v] of [
    ['config', config],
    ['frontends', config.frontends],
    ['frontend', fe],
    ['listen', fe.listen],
    ['listen[0]', fe.listen[0]],
    ['affinity', fe.affinity],
    ['persistence', fe.persistence],
    ['balance', fe.balance],
    ['allow', fe.allow],
    ['backends', fe.backends],
    ['backend', fe.backends[0]],
    ['backend address', fe.backends[0]!.address],
  ] as const) {
    t.ok(Object.isFrozen(v), `${label} is frozen`);
  }
  t.throws(() => {
    (fe.persistence as { ttl: number }).ttl = 1;
  }, TypeError);
  t.equal(fe.persistence.ttl, 30 * 60_000);
});

t.test('formatPath and ConfigError', async (t) => {
  t.equal(formatPath(['frontends', 0, 'backends', 2, 'address']), 'frontends[0].backends[2].address');
  t.equal(formatPath([]), '(root)');
  const e = new ConfigError([
    { path: 'frontends[0].afinity', message: 'unknown key' },
    { path: 'frontends[0].persistence.ttl', message: 'invalid duration "x" (expected e.g. 500ms, 2s, 30m, 1h)' },
  ]);
  t.equal(e.code, 'L4LB_ERR_CONFIG');
  t.equal(e.message, 'frontends[0].afinity: unknown key\nfrontends[0].persistence.ttl: invalid duration "x" (expected e.g. 500ms, 2s, 30m, 1h)');
});

t.test('parseDuration', async (t) => {
  const good: [string, number][] = [
    ['500ms', 500],
    ['2s', 2000],
    ['30m', 1_800_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    ['1d', 86_400_000],
    ['0s', 0],
    [' 2s ', 2000],
  ];
  for (const [text, ms] of good) t.equal(parseDuration(text), ms, `"${text}" = ${ms}ms`);
  for (const bad of ['', '2', '2 s', 's', '-1s', '1w', '2S', '1h 30m', 'ms', '1.s', 'forever']) {
    t.equal(parseDuration(bad), `invalid duration "${bad}" (expected e.g. 500ms, 2s, 30m, 1h)`, `"${bad}" is refused`);
  }
});

t.test('parseHostPort', async (t) => {
  t.same(parseHostPort('127.0.0.1:7000'), { host: '127.0.0.1', port: 7000, family: 4 });
  t.same(parseHostPort('0.0.0.0:0'), { host: '0.0.0.0', port: 0, family: 4 });
  t.same(parseHostPort('[::1]:7000'), { host: '::1', port: 7000, family: 6 });
  t.same(parseHostPort('[2001:DB8:0::1]:443'), { host: '2001:db8::1', port: 443, family: 6 });
  t.same(parseHostPort('localhost:80'), { host: '127.0.0.1', port: 80, family: 4 });
  t.same(parseHostPort('1.2.3.4:65535'), { host: '1.2.3.4', port: 65535, family: 4 });
  const bad: [string, string][] = [
    ['1.2.3.4:65536', 'invalid port 65536 in "1.2.3.4:65536" (0..65535)'],
    ['1.2.3.4:99999', 'invalid port 99999 in "1.2.3.4:99999" (0..65535)'],
    ['1.2.3.4', 'invalid address "1.2.3.4" (expected host:port or [v6]:port)'],
    ['1.2.3.4:', 'invalid address "1.2.3.4:" (expected host:port or [v6]:port)'],
    ['1.2.3.4:123456', 'invalid address "1.2.3.4:123456" (expected host:port or [v6]:port)'],
    ['::1:7000', 'invalid address "::1:7000" (expected host:port or [v6]:port)'],
    [':7000', 'invalid address ":7000" (expected host:port or [v6]:port)'],
    ['db.internal:6379', 'invalid address "db.internal:6379": host must be an IP literal'],
    ['[db]:6379', 'invalid address "[db]:6379": host must be an IP literal'],
    // ipaddr.js alone reads these as 10.0.0.0, 0.0.4.210 and 8.1.2.3 (octal)
    ['10.0.0:7000', 'invalid address "10.0.0:7000": host must be an IP literal'],
    ['1234:7000', 'invalid address "1234:7000": host must be an IP literal'],
    ['010.1.2.3:7000', 'invalid address "010.1.2.3:7000": host must be an IP literal'],
  ];
  for (const [text, message] of bad) t.equal(parseHostPort(text), message, `"${text}" is refused`);
  t.equal(formatHostPort({ host: '::1', port: 7000 }), '[::1]:7000');
  t.equal(formatHostPort({ host: '10.0.0.1', port: 7000 }), '10.0.0.1:7000');
});

t.test('parseCidr', async (t) => {
  const show = (c: ReturnType<typeof parseCidr>) => (typeof c === 'string' ? c : `${c[0].toString()}/${c[1]}`);
  const cases: [string, string][] = [
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['10.1.2.3', '10.1.2.3/32'],
    ['::1', '::1/128'],
    ['2001:db8::/32', '2001:db8::/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['10.0.0.0/33', 'invalid CIDR "10.0.0.0/33"'],
    ['2001:db8::/129', 'invalid CIDR "2001:db8::/129"'],
    ['10.0.0.0/', 'invalid CIDR "10.0.0.0/"'],
    ['10/8', 'invalid CIDR "10/8"'],
    ['010.0.0.0/8', 'invalid CIDR "010.0.0.0/8"'],
    ['office', 'invalid CIDR "office"'],
  ];
  for (const [text, want] of cases) t.equal(show(parseCidr(text)), want, text);
});
