#!/usr/bin/env node
// Micro benchmarks of the pure routing parts, on the compiled modules in dist/ (`npm run build` first):
// ring build, key hash and ring walk, source-IP key derivation, persistence table get/set and its heap
// at 1M entries, and key movement when one of ten backends goes. Run with --expose-gc (npm run bench:micro).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const require = createRequire(import.meta.url);
const dist = (m) => {
  try {
    return require(path.join(ROOT, 'dist', m));
  } catch (e) {
    console.error(`bench:micro: cannot load dist/${m} (run \`npm run build\` first): ${e.message}`);
    process.exit(1);
  }
};
const { Ring } = dist('routing/ring.js');
const { hashKey } = dist('routing/hash.js');
const { sourceIpKey } = dist('routing/affinity.js');
const { LocalTable } = dist('routing/persistence.js');
const { ConsistentHash } = dist('routing/balancer.js');

if (typeof global.gc !== 'function') {
  console.error('bench:micro: run node with --expose-gc (npm run bench:micro does)');
  process.exit(1);
}

const quick = process.argv.includes('--quick');
const rows = []; // { group, what, value, unit, note }
let sink = 0;

/** value: a number, or { cpu, wall } for a timing (CPU time is the figure; wall is shown beside it). */
function row(group, what, value, unit, note = '') {
  const timed = typeof value === 'object';
  const r = { group, what, value: timed ? value.cpu : value, wall: timed ? value.wall : null, unit, note };
  rows.push(r);
  console.log(`${group.padEnd(12)} ${what.padEnd(48)} ${fmt(r.value).padStart(10)} ${unit.padEnd(8)}${timed ? ` wall ${fmt(r.wall)}` : ''}${note ? `  (${note})` : ''}`);
}

function fmt(x) {
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(4);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** CPU time of this process (µs) and wall time (ns), for timing on a shared machine. */
const clocks = () => ({ cpu: process.cpuUsage(), wall: process.hrtime.bigint() });
function since(c0, n) {
  const u = process.cpuUsage(c0.cpu);
  return { cpu: ((u.user + u.system) * 1000) / n, wall: Number(process.hrtime.bigint() - c0.wall) / n };
}
const med = (runs) => ({ cpu: median(runs.map((r) => r.cpu)), wall: median(runs.map((r) => r.wall)) });

/**
 * ns per call of fn(i), CPU and wall: medians of `reps` timed runs after a warm-up. Each run lasts
 * about `budgetMs` (the count is calibrated, capped at `maxN`, so slow and fast operations take similar time).
 */
function nsPerOp(maxN, fn, reps = quick ? 3 : 5, budgetMs = quick ? 60 : 150) {
  let n = 0;
  const w0 = process.hrtime.bigint();
  while (n < maxN && Number(process.hrtime.bigint() - w0) < budgetMs * 1e6) for (let k = 0; k < 256; k++, n++) sink ^= fn(n) ? 1 : 0;
  n = Math.max(256, Math.min(maxN, n));
  const out = [];
  for (let r = 0; r < reps; r++) {
    const c0 = clocks();
    for (let i = 0; i < n; i++) sink ^= fn(i) ? 1 : 0;
    out.push(since(c0, n));
  }
  return med(out);
}

/** ms per call of fn(), CPU and wall. */
function msPer(reps, fn) {
  fn();
  const out = [];
  for (let r = 0; r < reps; r++) {
    const c0 = clocks();
    sink ^= fn() ? 1 : 0;
    const t = since(c0, 1);
    out.push({ cpu: t.cpu / 1e6, wall: t.wall / 1e6 });
  }
  return med(out);
}

const members = (n) => Array.from({ length: n }, (_, i) => ({ name: `backend-${i + 1}`, weight: 1, backup: false }));
const ALL = { acceptsNew: () => true, keeps: () => true, hasRoom: () => true, active: () => 0 };
const NONE = new Set();
const ipv4 = (i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const KEYS = Array.from({ length: 100_000 }, (_, i) => `ip:${ipv4(i * 7919)}`);

// ---- ring
const VNODES = 1000;
for (const n of [3, 10, 50]) row('ring', `build, ${n} backends × ${VNODES} vnodes`, msPer(quick ? 3 : 7, () => Ring.build(members(n), VNODES).size), 'ms');

// ---- hash and pick
row('pick', 'hashKey (MD5 of the key)', nsPerOp(200_000, (i) => hashKey(KEYS[i % KEYS.length])), 'ns/op');
const HASHES = Uint32Array.from(KEYS, hashKey);
for (const n of [3, 10, 50]) {
  const ch = new ConsistentHash(members(n), VNODES);
  row('pick', `walk only, ${n} backends (${ch.primary.size} points)`, nsPerOp(500_000, (i) => ch.pick(HASHES[i % HASHES.length], ALL, NONE)), 'ns/op');
  row('pick', `hash + walk, ${n} backends`, nsPerOp(200_000, (i) => ch.pick(hashKey(KEYS[i % KEYS.length]), ALL, NONE)), 'ns/op');
}

// ---- source-ip keys
const v4 = Array.from({ length: 4096 }, (_, i) => ipv4(i * 104729 + 1));
const v6 = Array.from({ length: 4096 }, (_, i) => `2001:db8:${((i * 31) & 0xffff).toString(16)}:${((i * 7) & 0xffff).toString(16)}::${(i + 1).toString(16)}`);
const mapped = v4.map((a) => `::ffff:${a}`);
const cases = [
  ['IPv4 /32', v4, { ipv4_prefix: 32, ipv6_prefix: 128 }],
  ['IPv4 /24', v4, { ipv4_prefix: 24, ipv6_prefix: 128 }],
  ['IPv4-mapped IPv6 /32', mapped, { ipv4_prefix: 32, ipv6_prefix: 128 }],
  ['IPv6 /128', v6, { ipv4_prefix: 32, ipv6_prefix: 128 }],
  ['IPv6 /64', v6, { ipv4_prefix: 32, ipv6_prefix: 64 }],
];
for (const [what, addrs, opts] of cases) row('sourceIpKey', what, nsPerOp(200_000, (i) => sourceIpKey(addrs[i & 4095], opts).length), 'ns/op');

// ---- persistence table at 1M entries
const M = 1_000_000;
global.gc();
global.gc();
const heap0 = process.memoryUsage().heapUsed;
const rss0 = process.memoryUsage().rss;
let table = new LocalTable(30 * 60_000, M);
const BACKENDS = members(10).map((m) => m.name);
const f0 = clocks();
for (let i = 0; i < M; i++) table.assign(`ip:${ipv4(i)}`, BACKENDS[i % 10]);
const fillNs = since(f0, M);
global.gc();
global.gc();
const heap1 = process.memoryUsage().heapUsed;
const rss1 = process.memoryUsage().rss;
row('table', 'set (assign), filling to 1M entries', fillNs, 'ns/op', 'keys built in the loop');
row('table', 'heap at 1M entries (heapUsed delta after gc)', (heap1 - heap0) / 2 ** 20, 'MiB', `${((heap1 - heap0) / M).toFixed(0)} B/entry, keys included`);
row('table', 'RSS at 1M entries (delta)', (rss1 - rss0) / 2 ** 20, 'MiB');
const probe = Array.from({ length: 65_536 }, (_, i) => `ip:${ipv4((i * 2654435761) % M)}`);
const missing = Array.from({ length: 65_536 }, (_, i) => `ip:192.168.${(i >> 8) & 255}.${i & 255}x`);
row('table', 'get (lookup), hit, 1M entries', nsPerOp(1_000_000, (i) => table.lookup(probe[i & 65535])), 'ns/op', 'random keys');
row('table', 'get (lookup), miss, 1M entries', nsPerOp(1_000_000, (i) => table.lookup(missing[i & 65535])), 'ns/op');
row('table', 'set (assign) existing key, 1M entries', nsPerOp(1_000_000, (i) => table.assign(probe[i & 65535], BACKENDS[i % 10])), 'ns/op');
row('table', 'set (assign) new key, full at 1M (evicts LRU)', nsPerOp(500_000, (i) => table.assign(`ip:172.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, BACKENDS[i % 10])), 'ns/op', 'key built per op');
row('table', 'open + close (pin/unpin), 1M entries', nsPerOp(500_000, (i) => (table.open(probe[i & 65535]), table.close(probe[i & 65535]))), 'ns/op');
sink ^= table.size;
table = null;
// The floor under those figures on this machine: a bare Map of the same 1M keys, same probes (no LRU, no ttl).
{
  global.gc();
  const m = new Map();
  for (let i = 0; i < M; i++) m.set(`ip:${ipv4(i)}`, BACKENDS[i % 10]);
  row('table', 'floor: bare Map.get, hit, same 1M keys', nsPerOp(1_000_000, (i) => m.get(probe[i & 65535])), 'ns/op', 'random keys; memory latency, not l4lb');
  row('table', 'floor: bare Map.set existing key, same 1M keys', nsPerOp(1_000_000, (i) => m.set(probe[i & 65535], BACKENDS[i % 10])), 'ns/op');
  sink ^= m.size;
}

// ---- key movement: remove 1 of 10 backends
{
  const before = new ConsistentHash(members(10), VNODES);
  const gone = 'backend-4';
  const after = new ConsistentHash(members(10).filter((m) => m.name !== gone), VNODES);
  const owner = (ch, h) => ch.primary.names[ch.pick(h, ALL, NONE).backend];
  let moved = 0;
  let movedNeedlessly = 0;
  let onGone = 0;
  for (const h of HASHES) {
    const a = owner(before, h);
    const b = owner(after, h);
    if (a === gone) onGone++;
    if (a !== b) {
      moved++;
      if (a !== gone) movedNeedlessly++;
    }
  }
  const n = HASHES.length;
  row('movement', 'keys moved removing 1 of 10 backends', moved / n, 'fraction', `optimal 1/10; ${(moved / n / 0.1).toFixed(3)}× optimal; ${n.toLocaleString('en-US')} keys`);
  row('movement', 'keys moved that were not on the removed one', movedNeedlessly, 'keys', `should be 0; ${onGone} were on it`);
  const grown = new ConsistentHash(members(11), VNODES);
  let movedAdd = 0;
  let notToNew = 0;
  for (const h of HASHES) {
    const a = owner(before, h);
    const b = owner(grown, h);
    if (a !== b) {
      movedAdd++;
      if (b !== 'backend-11') notToNew++;
    }
  }
  row('movement', 'keys moved adding an 11th backend', movedAdd / n, 'fraction', `optimal 1/11 = ${(1 / 11).toFixed(4)}; ${notToNew} moved elsewhere than the new one`);
}

// ---- output
const pad = (x) => String(x).padStart(2, '0');
const d = new Date();
const stamp = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}`;
const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
const meta = { date: d.toISOString(), node: process.version, cpu, nproc: os.cpus().length, timing: 'value = process CPU time per op (ns, or ms for ring build); wall = wall-clock', kernel: os.release(), loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' ') };
const md = [
  `# l4lb micro bench, ${meta.date}`,
  '',
  `- machine: ${meta.nproc} CPUs, ${cpu}, kernel ${meta.kernel}, node ${meta.node}, load average ${meta.loadavg}`,
  '- timings: CPU time of the process per op (wall time beside it: on a shared machine wall time also counts waiting for a CPU), median of several runs after a warm-up; heap: `process.memoryUsage().heapUsed` delta after `gc()`',
  '',
  '| part | what | value | wall | unit | note |',
  '|---|---|---:|---:|---|---|',
  ...rows.map((r) => `| ${r.group} | ${r.what} | ${fmt(r.value)} | ${r.wall === null ? '' : fmt(r.wall)} | ${r.unit} | ${r.note} |`),
  '',
].join('\n');
const out = path.join(HERE, 'results');
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, `${stamp}-micro.json`), `${JSON.stringify({ meta, rows }, null, 2)}\n`);
fs.writeFileSync(path.join(out, `${stamp}-micro.md`), md);
console.log(`\n${md}`);
console.log(`bench:micro: results in bench/results/${stamp}-micro.json and .md${sink === 0.5 ? '' : ''}`);
