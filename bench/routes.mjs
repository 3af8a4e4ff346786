// The routes workloads of `npm run bench` (issue 10; SPEC §9 pools and routes). Imported by run.mjs:
// the l4lb frontends they compare, the client names and their pre-captured ClientHellos, and the
// "Routes" section of the results markdown. See bench/README.md.
//
//   hello   TLS-ClientHello connection rate through three SNI-reading frontends (§3 one pool with
//           affinity.key sni; 1 SNI route; 100 SNI routes + 10 wildcard routes) and the bare relay
//   banner  time to first byte from a server-speaks-first backend through a no-peek l4lb frontend
//           (routes by source only), the §3 l4lb, the bare relay, HAProxy, nginx, and direct
import fs from 'node:fs';
import tls from 'node:tls';
import { Duplex } from 'node:stream';

/** The run that "today's figures" means in issue 10's "one-pool form within 3% of today's figures". */
export const TODAY = { file: 'bench/results/2026-11-23-0954', column: 'l4lb-w1' };

export const EXACT = Array.from({ length: 100 }, (_, i) => `svc-${String(i).padStart(3, '0')}.example.com`);
/** Wildcard routes `*.wN.example.org`; clients hit one name under each (some several labels deep). */
export const WILD = Array.from({ length: 10 }, (_, i) => `w${i}.example.org`);
const WILD_HITS = WILD.map((s, i) => (i % 2 ? `a.b.${s}` : `api-${i}.${s}`));
/** Every client name, interleaved so that consecutive connections walk all routes. */
export const NAMES = [...EXACT, ...WILD_HITS];

/** The answer byte of the backends every SNI pool points at, and of the fallback (default route) pool. */
export const ROUTED = 'A';
export const FALLBACK = 'D';

const pool = (name, key, ports, extra = []) => [
  `  - name: ${name}`,
  `    affinity: { key: ${key} }`,
  ...extra,
  '    timeouts: { connect: 5s, idle: 1h }',
  `    backends: [${ports.map((p, i) => `{ name: b${i + 1}, address: "127.0.0.1:${p}" }`).join(', ')}]`,
];
// 111 pools with the default max_entries (1M, preallocated by lru-cache: ~31 MB each) would need ~3.4 GB.
const SMALL_TABLE = '    persistence: { max_entries: 10000 }';
const frontHead = (port, maxConn) => ['frontends:', '  - name: bench', `    listen: 127.0.0.1:${port}`, `    max_connections: ${maxConn}`];

/**
 * l4lb variants of the routes workloads: name → { label, lines(port, backendPorts, { maxConn, fallbackPort }) }.
 * `lines` gives the config after the shared head (workers, log, shutdown_grace).
 */
export const L4LB_VARIANTS = {
  'l4lb-sni': {
    workload: 'hello',
    label: 'l4lb, §3 one pool, `affinity.key: sni`',
    lines: (port, be, { maxConn }) => [
      ...frontHead(port, maxConn),
      '    affinity: { key: sni }',
      SMALL_TABLE,
      '    timeouts: { connect: 5s, idle: 1h, handshake: 5s }',
      '    backends:',
      ...be.map((b, i) => `      - { name: b${i + 1}, address: "127.0.0.1:${b}" }`),
    ],
  },
  'l4lb-r1': {
    workload: 'hello',
    label: 'l4lb, 1 SNI route (`*.example.com`, `*.example.org`) + default',
    lines: (port, be, { maxConn, fallbackPort }) => [
      'pools:',
      ...pool('svc', 'sni', be, [SMALL_TABLE]),
      ...pool('fallback', 'sni', [fallbackPort], [SMALL_TABLE]),
      ...frontHead(port, maxConn),
      '    timeouts: { handshake: 5s }',
      '    routes:',
      '      - { match: { sni: ["*.example.com", "*.example.org"] }, pool: svc }',
      '      - { pool: fallback }',
    ],
  },
  'l4lb-r100': {
    workload: 'hello',
    label: `l4lb, ${EXACT.length} SNI routes + ${WILD.length} wildcard routes + default, one pool each`,
    lines: (port, be, { maxConn, fallbackPort }) => [
      'pools:',
      ...EXACT.flatMap((_, i) => pool(`svc-${String(i).padStart(3, '0')}`, 'sni', be, [SMALL_TABLE])),
      ...WILD.flatMap((_, i) => pool(`wild-${i}`, 'sni', be, [SMALL_TABLE])),
      ...pool('fallback', 'sni', [fallbackPort], [SMALL_TABLE]),
      ...frontHead(port, maxConn),
      '    timeouts: { handshake: 5s }',
      '    routes:',
      ...EXACT.map((n, i) => `      - { match: { sni: [${n}] }, pool: svc-${String(i).padStart(3, '0')} }`),
      ...WILD.map((s, i) => `      - { match: { sni: ["*.${s}"] }, pool: wild-${i} }`),
      '      - { pool: fallback }',
    ],
  },
  // Diagnostic: the same 111 routes, all to one pool: separates the route table's cost from that of 111 pools.
  'l4lb-r100p1': {
    workload: 'hello',
    label: `l4lb, the same ${EXACT.length} + ${WILD.length} routes, all to one pool (diagnostic)`,
    lines: (port, be, { maxConn, fallbackPort }) => [
      'pools:',
      ...pool('svc', 'sni', be, [SMALL_TABLE]),
      ...pool('fallback', 'sni', [fallbackPort], [SMALL_TABLE]),
      ...frontHead(port, maxConn),
      '    timeouts: { handshake: 5s }',
      '    routes:',
      ...EXACT.map((n) => `      - { match: { sni: [${n}] }, pool: svc }`),
      ...WILD.map((s) => `      - { match: { sni: ["*.${s}"] }, pool: svc }`),
      '      - { pool: fallback }',
    ],
  },
  'l4lb-src': {
    workload: 'banner',
    label: 'l4lb, no-peek routes (`source` only, pools `source_ip`)',
    lines: (port, be, { maxConn }) => [
      'pools:',
      ...pool('local', 'source_ip', be),
      ...pool('other', 'source_ip', be),
      ...frontHead(port, maxConn),
      '    timeouts: { handshake: 5s }',
      '    routes:',
      '      - { match: { source: [127.0.0.0/8] }, pool: local }',
      '      - { pool: other }',
    ],
  },
};

/** A real ClientHello from node:tls for `servername`, captured from a stream that goes nowhere. */
function captureHello(servername) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let sock = null;
    const timer = setTimeout(() => reject(new Error(`no ClientHello for ${servername}`)), 5000);
    const sink = new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        buf = Buffer.concat([buf, chunk]);
        cb();
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          clearTimeout(timer);
          resolve(buf.subarray(0, 5 + buf.readUInt16BE(3)));
          setImmediate(() => sock?.destroy());
        }
      },
    });
    sock = tls.connect({ socket: sink, servername, rejectUnauthorized: false });
    sock.on('error', () => {});
  });
}

/** Capture one ClientHello per client name into `file` (JSON [{name, hex}]); returns the hello size range. */
export async function writeHellos(file) {
  const out = [];
  for (const name of NAMES) {
    const h = await captureHello(name);
    if (h[0] !== 0x16 || !h.includes(Buffer.from(name))) throw new Error(`captured ClientHello for ${name} does not carry it`);
    out.push({ name, hex: h.toString('hex') });
  }
  fs.writeFileSync(file, JSON.stringify(out));
  const sizes = out.map((h) => h.hex.length / 2);
  return { min: Math.min(...sizes), max: Math.max(...sizes), count: out.length };
}

// ---------------------------------------------------------------- markdown

export const HELLO_FIGS = [
  ['hello_conn_per_s', 'TLS-hello connections/s', 'up'],
  ['hello_p50_ms', 'connect → answer p50 ms', 'down'],
  ['hello_p99_ms', 'connect → answer p99 ms', 'down'],
  ['hello_cpu_us_per_conn', 'LB CPU µs per connection', 'down'],
  ['rss_start_mb', 'RSS MB at start', 'down'],
  ['rss_hello_mb', 'peak RSS MB', 'down'],
  ['hello_fallback', 'answers from the default route', 'info'],
];
export const BANNER_FIGS = [
  ['banner_p50_ms', 'first byte p50 ms', 'down'],
  ['banner_p99_ms', 'first byte p99 ms', 'down'],
  ['banner_mean_ms', 'first byte mean ms', 'down'],
];

const HELLO_ROWS = ['l4lb-sni', 'l4lb-r1', 'l4lb-r100', 'l4lb-r100p1', 'bare'];
const BANNER_ROWS = ['direct', 'l4lb-src', 'l4lb', 'l4lb-w1', 'bare', 'haproxy', 'nginx'];
const ROW_LABEL = {
  ...Object.fromEntries(Object.entries(L4LB_VARIANTS).map(([k, v]) => [k, v.label])),
  l4lb: 'l4lb, §3 one pool, `affinity: source_ip` (as in the other workloads)',
  'l4lb-w1': 'l4lb, §3 one pool, `affinity: source_ip`, `workers: 1`',
  bare: 'bare relay (`bench/bare-relay.mjs`, no peek)',
  haproxy: 'HAProxy (`mode tcp`, `balance source`)',
  nginx: 'nginx `stream` (`hash $remote_addr`)',
  direct: 'direct to the backend (no LB)',
};

/**
 * The "Routes" section. `sum[wl][lb][fig]` = {median, min, max, n}; `main` = the Figures summary of
 * this run (for the one-pool comparison); `today` = that of TODAY.file, or null.
 */
export function routesMarkdown({ sum, settings, hellos, main, today, fmt }) {
  const L = [];
  const cell = (s) => (!s ? '–' : s.n > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median));
  const med = (wl, lb, k) => sum[wl]?.[lb]?.[k]?.median;
  const ratio = (a, b) => (a === undefined || b === undefined || !b ? '–' : `${(a / b).toFixed(2)}×`);
  L.push('## Routes (issue 10: pools and routes, SPEC §9)');
  L.push('');
  const hello = sum.hello ?? {};
  const has = (x) => x && Object.keys(x).length > 0;
  const helloRows = [...HELLO_ROWS.filter((r) => has(hello[r])), ...Object.keys(hello).filter((r) => !HELLO_ROWS.includes(r) && has(hello[r]))];
  if (helloRows.length) {
    L.push(`### TLS-ClientHello connection rate`);
    L.push('');
    L.push(
      `Each connection: connect, write one pre-captured ClientHello (node:tls, ${hellos ? `${hellos.min}–${hellos.max} bytes` : 'real'}, SNI set; written raw, so the client runs no TLS), ` +
        `read the backend's first answer byte, close; ${settings.helloConc} at a time, n=${settings.helloN} per measurement after a warm-up of ${settings.helloWarm} (every name is a persistence hit in the measured part). ` +
        `Names in turn over ${EXACT.length} \`svc-NNN.example.com\` (one exact route each in the 100-route frontend) and ${WILD.length} names under \`*.wN.example.org\` (one wildcard route each). ` +
        `Every SNI pool points at the same two answering backends (answer \`${ROUTED}\`); the default route's pool at a third (answer \`${FALLBACK}\`), so a connection that missed its route is counted. ` +
        `The SNI frontends must read the whole ClientHello before they connect to a backend; the bare relay connects at once (a floor, not a like-for-like). Every pool (and the §3 one) has \`persistence.max_entries: 10000\`.`,
    );
    L.push('');
    const figs = HELLO_FIGS.filter(([k]) => helloRows.some((r) => hello[r][k]));
    L.push(`| frontend | ${figs.map(([, l, d]) => `${l}${d === 'up' ? ' ↑' : d === 'down' ? ' ↓' : ''}`).join(' | ')} |`);
    L.push(`|---|${figs.map(() => '---:').join('|')}|`);
    for (const r of helloRows) L.push(`| ${ROW_LABEL[r] ?? r} | ${figs.map(([k]) => cell(hello[r][k])).join(' | ')} |`);
    L.push('');
    const r100 = med('hello', 'l4lb-r100', 'hello_conn_per_s');
    const r1 = med('hello', 'l4lb-r1', 'hello_conn_per_s');
    const one = med('hello', 'l4lb-sni', 'hello_conn_per_s');
    const bare = med('hello', 'bare', 'hello_conn_per_s');
    const lines = [];
    if (r100 !== undefined && r1 !== undefined) {
      const x = r100 / r1;
      lines.push(`- **100 routes ÷ 1 route**, connections/s: **${x.toFixed(3)}×** (target ≥ 0.95×, i.e. 100 routes cost ≤ 5%: ${x >= 0.95 ? 'met' : '**not met**'}); LB CPU µs per connection: ${ratio(med('hello', 'l4lb-r100', 'hello_cpu_us_per_conn'), med('hello', 'l4lb-r1', 'hello_cpu_us_per_conn'))}; p99: ${ratio(med('hello', 'l4lb-r100', 'hello_p99_ms'), med('hello', 'l4lb-r1', 'hello_p99_ms'))}`);
    }
    const p1 = med('hello', 'l4lb-r100p1', 'hello_conn_per_s');
    if (p1 !== undefined && r1 !== undefined) lines.push(`- 100 routes to one pool ÷ 1 route, connections/s: ${ratio(p1, r1)}, LB CPU µs per connection: ${ratio(med('hello', 'l4lb-r100p1', 'hello_cpu_us_per_conn'), med('hello', 'l4lb-r1', 'hello_cpu_us_per_conn'))} (the route table alone; the 100-route row adds 110 pools)`);
    if (r1 !== undefined && one !== undefined) lines.push(`- 1 route ÷ §3 one pool (sni), connections/s: ${ratio(r1, one)}; 100 routes ÷ §3 one pool: ${ratio(r100, one)}`);
    if (bare !== undefined) lines.push(`- ÷ bare relay, connections/s: §3 sni ${ratio(one, bare)}, 1 route ${ratio(r1, bare)}, 100 routes ${ratio(r100, bare)}`);
    L.push(...lines, '');
  }
  const banner = sum.banner ?? {};
  const bannerRows = [...BANNER_ROWS.filter((r) => has(banner[r])), ...Object.keys(banner).filter((r) => !BANNER_ROWS.includes(r) && has(banner[r]))];
  if (bannerRows.length) {
    L.push('### Server speaks first: time to first byte');
    L.push('');
    L.push(
      `A backend writes a banner line at accept; the client connects, sends nothing, and times net.connect() → first byte received; one connection at a time, n=${settings.bannerN} per measurement after ${settings.bannerWarm} warm-up connections. ` +
        'A frontend that waited for client bytes would answer only after `timeouts.handshake` (5 s); the client gives up after 10 s.',
    );
    L.push('');
    const bp50 = med('banner', 'bare', 'banner_p50_ms');
    const bp99 = med('banner', 'bare', 'banner_p99_ms');
    L.push(`| path | ${BANNER_FIGS.map(([, l]) => `${l} ↓`).join(' | ')} | p50 ÷ bare | p99 ÷ bare |`);
    L.push(`|---|${BANNER_FIGS.map(() => '---:').join('|')}|---:|---:|`);
    for (const r of bannerRows) {
      L.push(`| ${ROW_LABEL[r] ?? r} | ${BANNER_FIGS.map(([k]) => cell(banner[r][k])).join(' | ')} | ${ratio(med('banner', r, 'banner_p50_ms'), bp50)} | ${ratio(med('banner', r, 'banner_p99_ms'), bp99)} |`);
    }
    L.push('');
    const s50 = med('banner', 'l4lb-src', 'banner_p50_ms');
    if (s50 !== undefined && bp50 !== undefined) {
      L.push(`- **no-peek l4lb ÷ bare**, first byte p50: **${(s50 / bp50).toFixed(2)}×**, p99: ${ratio(med('banner', 'l4lb-src', 'banner_p99_ms'), bp99)} (target: as fast as the bare relay, i.e. ≈ 1.00×; both pay one accept and one connect before the banner can pass)`);
      L.push('');
    }
  }
  // (3) the one-pool form against today's figures
  L.push('### One-pool form against today (0954)');
  L.push('');
  L.push(
    `"The one-pool form within 3% of today's figures" compares this run's \`l4lb\` column of the Figures table above (the §3 form: one frontend with its own \`backends\`, \`affinity: source_ip\`, ` +
      `i.e. an implicit pool, through the reshaped frontend/pool plans) with the \`${TODAY.column}\` column of \`${TODAY.file}.md\` (the same config with \`workers: 1\`, before pools and routes), figure by figure; ` +
      `the ones that exercise the reshaped connection path are **new connections/s (-k 0)** (0954: 3,609) and **LB CPU µs per new connection** (0954: 285), then PING k req/s (33.6) and LB CPU µs per PING (28.4). ` +
      `The routes workloads above add nothing to it. Absolute figures move with the machine's load between runs; the ratio to the bare relay (measured in each run) is the steadier comparison.`,
  );
  L.push('');
  const col = main?.l4lb ? 'l4lb' : main?.['l4lb-w1'] ? 'l4lb-w1' : null;
  const base = today?.[TODAY.column];
  if (col && base) {
    const FIGS = [
      ['conn_per_s', 'new connections/s (-k 0) ↑'],
      ['cpu_us_per_conn', 'LB CPU µs per new connection ↓'],
      ['conn_p99_ms', 'new connection + PING p99 ms ↓'],
      ['ping_krps', 'PING k req/s, 50 conns ↑'],
      ['cpu_us_per_ping', 'LB CPU µs per PING ↓'],
      ['ping_p99_ms', 'PING p99 ms ↓'],
      ['c2000_krps', '2,000 conns: k req/s ↑'],
      ['bulk1_fwd_gbps', 'bulk, 1 stream, client→server, Gbit/s ↑'],
      ['bulk1_rev_gbps', 'bulk, 1 stream, server→client, Gbit/s ↑'],
      ['cpu_s_per_gb', 'LB CPU-s per GB (1 stream) ↓'],
      ['idle_kib_per_conn', 'KiB per idle conn ↓'],
      ['rss_start_mb', 'RSS MB at start ↓'],
    ].filter(([k]) => main[col][k] && base[k]);
    if (FIGS.length) {
      L.push(`| figure | 0954 \`${TODAY.column}\` | this run \`${col}\` | this ÷ 0954 | 0954 ÷ bare | this run ÷ bare |`);
      L.push('|---|---:|---:|---:|---:|---:|');
      for (const [k, label] of FIGS) {
        const a = main[col][k].median;
        const b = base[k].median;
        L.push(`| ${label} | ${fmt(b)} | ${fmt(a)} | ${(a / b).toFixed(3)}× | ${ratio(b, today.bare?.[k]?.median)} | ${ratio(a, main.bare?.[k]?.median)} |`);
      }
      L.push('');
    }
  } else if (!col) {
    L.push('_This run measured no `l4lb` figures of the other workloads (run them with it, e.g. `--workloads conn,ping,routes`, for the comparison table)._');
    L.push('');
  } else {
    L.push(`_${TODAY.file}.json not found: no comparison table._`);
    L.push('');
  }
  return L.join('\n');
}
