#!/usr/bin/env node
// Side-by-side layer-4 benchmark: l4lb, a bare Node.js relay, HAProxy and nginx `stream`, in front of
// the same real backends on loopback (iperf3 for bulk, redis-server for request/response and connection
// rate, a Node hold server for idle connections; answering and banner servers for the routes
// workloads, bench/routes.mjs). See bench/README.md. Installs nothing.
//
//   node bench/run.mjs [--quick] [--rounds N] [--only l4lb,haproxy] [--workloads bulk,ping,routes]
//                      [--workers 1,2] [--duration S] [--idle-conns N] [--no-info] [--keep-tmp] [--out BASE]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { L4LB_VARIANTS, HELLO_FIGS, BANNER_FIGS, FALLBACK, ROUTED, TODAY, routesMarkdown, writeHellos } from './routes.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- options

const ALL_LBS = ['l4lb', 'bare', 'haproxy', 'nginx'];
const ALL_WORKLOADS = ['bulk', 'bulk4', 'ping', 'conn', 'c2000', 'idle', 'hello', 'banner'];
/** Workloads with their own set of LBs (bench/routes.mjs): figures in the Routes section, not in Figures. */
const ROUTE_WORKLOADS = ['hello', 'banner'];
/** Names for several workloads at once. */
const WORKLOAD_GROUPS = { routes: ROUTE_WORKLOADS };
/** LB names that only the routes workloads use. */
const ROUTE_LBS = [...Object.keys(L4LB_VARIANTS), 'direct'];

function parseArgs(argv) {
  const o = { quick: false, rounds: null, only: null, workloads: null, workers: null, duration: null, idleConns: null, info: true, keepTmp: false, out: null };
  const list = (v) => String(v).split(',').map((s) => s.trim()).filter(Boolean);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) die(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--rounds') o.rounds = Number(val());
    else if (a === '--only') o.only = list(val());
    else if (a === '--workloads') o.workloads = list(val()).flatMap((w) => WORKLOAD_GROUPS[w] ?? [w]);
    else if (a === '--workers') o.workers = list(val()).map(Number);
    else if (a === '--duration') o.duration = Number(val());
    else if (a === '--idle-conns') o.idleConns = Number(val());
    else if (a === '--no-info') o.info = false;
    else if (a === '--keep-tmp') o.keepTmp = true;
    else if (a === '--out') o.out = path.resolve(val()).replace(/\.(md|json)$/, '');
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 8).join('\n').replace(/^\/\/ ?/gm, ''));
      process.exit(0);
    } else die(`unknown argument ${a} (see --help)`);
  }
  for (const w of o.workloads ?? []) if (!ALL_WORKLOADS.includes(w)) die(`--workloads: unknown workload ${w} (${ALL_WORKLOADS.join(', ')}; routes = ${ROUTE_WORKLOADS.join(',')})`);
  for (const l of o.only ?? []) if (![...ALL_LBS, 'l4lb-info', ...ROUTE_LBS].includes(l) && !/^l4lb-w\d+$/.test(l)) die(`--only: unknown LB ${l} (${ALL_LBS.join(', ')}, l4lb-info, ${ROUTE_LBS.join(', ')})`);
  for (const n of o.workers ?? []) if (!Number.isInteger(n) || n < 1) die('--workers: a list of positive integers, e.g. 1,2');
  return o;
}

function die(msg) {
  console.error(`bench: ${msg}`);
  process.exit(1);
}

const opt = parseArgs(process.argv.slice(2));
const NOFILE = readNofile();
const S = opt.quick
  ? { rounds: 1, T: 2, omit: 0, pingN: 20_000, connN: 3_000, c2000N: 20_000, idleN: 2_000, helloN: 3_000, helloWarm: 500, helloMaxS: 20, bannerN: 300, bannerWarm: 30, bannerMaxS: 15 }
  : { rounds: 3, T: 10, omit: 1, pingN: 200_000, connN: 20_000, c2000N: 200_000, idleN: 10_000, helloN: 20_000, helloWarm: 1_000, helloMaxS: 60, bannerN: 2_000, bannerWarm: 100, bannerMaxS: 60 };
S.helloConc = 50; // like redis-benchmark -c 50 in `conn`
if (opt.rounds) S.rounds = opt.rounds;
if (opt.duration) S.T = opt.duration;
if (opt.idleConns) S.idleN = opt.idleConns;
const idleCap = Math.floor((NOFILE - 300) / 2); // the LB holds two fds per proxied connection
const idleWanted = S.idleN;
S.idleN = Math.min(S.idleN, idleCap);

// ---------------------------------------------------------------- processes and cleanup

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'l4lb-bench-'));
/** Every process group we started, by leader pid. */
const groups = new Map();
const notes = []; // loud notes for the report

function note(msg) {
  notes.push(msg);
  console.error(`\n!!! ${msg}\n`);
}

/** Start a process in its own process group (so its children can be ended with it). */
function start(name, cmd, args, { stdout = 'file', env } = {}) {
  const outFile = path.join(TMP, `${name}.out`);
  const errFile = path.join(TMP, `${name}.err`);
  const out = stdout === 'pipe' ? 'pipe' : fs.openSync(outFile, 'a');
  const err = fs.openSync(errFile, 'a');
  const child = spawn(cmd, args, { detached: true, stdio: ['pipe', out, err], env: env ?? process.env, cwd: ROOT });
  if (typeof out === 'number') fs.closeSync(out);
  fs.closeSync(err);
  child.name = name;
  child.outFile = outFile;
  child.errFile = errFile;
  child.exited = null;
  child.on('exit', (code, signal) => {
    child.exited = { code, signal };
  });
  child.on('error', (e) => {
    child.exited = { code: -1, signal: null, error: e.message };
  });
  if (child.pid) groups.set(child.pid, child);
  return child;
}

function signalGroup(child, sig) {
  try {
    process.kill(-child.pid, sig);
  } catch {
    /* gone */
  }
}

async function stop(child, graceMs = 3000) {
  if (!child || !child.pid) return;
  if (child.exited === null) {
    signalGroup(child, 'SIGTERM');
    const t0 = Date.now();
    while (child.exited === null && Date.now() - t0 < graceMs) await sleep(20);
  }
  signalGroup(child, 'SIGKILL'); // the leader's children too (nginx workers, l4lb workers)
  groups.delete(child.pid);
}

function killAllSync() {
  for (const child of groups.values()) signalGroup(child, 'SIGKILL');
  groups.clear();
  if (!opt.keepTmp) fs.rmSync(TMP, { recursive: true, force: true });
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\nbench: ${sig}, stopping everything`);
    killAllSync();
    process.exit(130);
  });
}
process.on('uncaughtException', (e) => {
  console.error('bench: fatal:', e);
  killAllSync();
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  console.error('bench: fatal:', e);
  killAllSync();
  process.exit(1);
});

/** Run a tool to completion, with a time limit. */
function run(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    if (child.pid) groups.set(child.pid, child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t0 = Date.now();
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(child, 'SIGKILL');
    }, timeoutMs);
    const done = (code) => {
      clearTimeout(timer);
      groups.delete(child.pid);
      resolve({ code, stdout, stderr, timedOut, ms: Date.now() - t0 });
    };
    child.on('close', done);
    child.on('error', (e) => {
      stderr += e.message;
      done(-1);
    });
  });
}

const usedPorts = new Set();
async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
}

/** Is something listening on 127.0.0.1:port (or 0.0.0.0)? Read from /proc, so no connection is made. */
function isListening(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && cols[1]?.endsWith(`:${hex}`)) return true;
    }
  }
  return false;
}

async function waitListening(child, ports, timeoutMs = 15000) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (child.exited) throw new Error(`${child.name} exited (${JSON.stringify(child.exited)}) before listening: ${tail(child.errFile)} ${tail(child.outFile)}`);
    if (ports.every(isListening)) return;
    await sleep(25);
  }
  throw new Error(`${child.name} not listening on ${ports} after ${timeoutMs} ms: ${tail(child.errFile)} ${tail(child.outFile)}`);
}

function tail(file, n = 5) {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-n).join(' | ');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- /proc accounting

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

function readStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]), cutime: Number(f[13]), cstime: Number(f[14]) };
  } catch {
    return null;
  }
}

/** The pid and all its live descendants. */
function tree(root) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(d);
    if (!st) continue;
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(Number(d));
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i]) ?? []));
  return out;
}

/** CPU seconds of the LB: the leader (with its reaped children) plus its live descendants. */
function cpuSeconds(root) {
  let ticks = 0;
  for (const pid of tree(root)) {
    const st = readStat(pid);
    if (!st) continue;
    ticks += st.utime + st.stime + (pid === root ? st.cutime + st.cstime : 0);
  }
  return ticks / CLK_TCK;
}

function statusKiB(pid, field) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Sum over the LB's processes of VmRSS (now) or VmHWM (peak since start), KiB. */
const rssKiB = (root) => tree(root).reduce((s, p) => s + statusKiB(p, 'VmRSS'), 0);
const hwmKiB = (root) => tree(root).reduce((s, p) => s + statusKiB(p, 'VmHWM'), 0);

// ---------------------------------------------------------------- machine and versions

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return null;
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}
const firstLine = (s) => (s ? s.split('\n')[0] : null);
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function readNofile() {
  try {
    const m = fs.readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)/);
    return m ? Number(m[1]) : 1024;
  } catch {
    return 1024;
  }
}

function machine() {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
  return {
    nproc: Number(sh('nproc', [])) || os.cpus().length,
    cpu,
    kernel: os.release(),
    mem_gb: Math.round(os.totalmem() / 2 ** 30),
    nofile: NOFILE,
    loadavg_start: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    versions: {
      node: process.version,
      l4lb: JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version,
      haproxy: have('haproxy') ? firstLine(sh('haproxy', ['-v'])) : null,
      nginx: have('nginx') ? firstLine(sh('nginx', ['-v'])) : null,
      redis: have('redis-server') ? firstLine(sh('redis-server', ['--version'])) : null,
      redis_benchmark: have('redis-benchmark') ? firstLine(sh('redis-benchmark', ['--version'])) : null,
      iperf3: have('iperf3') ? firstLine(sh('iperf3', ['--version'])) : null,
    },
  };
}

// ---------------------------------------------------------------- load balancers

const NGINX_STREAM = '/usr/lib/nginx/modules/ngx_stream_module.so';

/**
 * An l4lb LB: the §3 form of the other workloads (one frontend, its own backends, `affinity: source_ip`),
 * or with `variant` one of the routes workloads' configs (bench/routes.mjs).
 */
function l4lbLB(name, { level = 'warn', workers = null, variant = null } = {}) {
  return {
    name,
    kind: 'l4lb',
    workers,
    variant,
    config(port, backends, be = {}) {
      const head = [...(workers === null ? [] : [`workers: ${workers}`]), `log: { level: ${level} }`, 'shutdown_grace: 1s'];
      if (variant) return `${[...head, ...variant.lines(port, backends, { maxConn: NOFILE * 2, fallbackPort: be.fallbackPort })].join('\n')}\n`;
      const lines = [
        ...head,
        'frontends:',
        '  - name: bench',
        `    listen: 127.0.0.1:${port}`,
        `    max_connections: ${NOFILE * 2}`,
        '    affinity: { key: source_ip }',
        '    timeouts: { connect: 5s, idle: 1h }',
        '    backends:',
        ...backends.map((b, i) => `      - { name: b${i + 1}, address: "127.0.0.1:${b}" }`),
      ];
      return `${lines.join('\n')}\n`;
    },
    start(port, backends, tag, be) {
      const file = path.join(TMP, `${name}-${tag}.yaml`);
      fs.writeFileSync(file, this.config(port, backends, be));
      // L4LB_BENCH_NODE_FLAGS="--trace-gc" (or --cpu-prof ...): node flags for the l4lb processes only, for profiling
      const flags = (process.env.L4LB_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
      return start(`${name}-${tag}`, process.execPath, [...flags, path.join(ROOT, 'bin/l4lb'), 'run', '-c', file]);
    },
    /** null if l4lb accepts the config, else its complaint. */
    check() {
      const file = path.join(TMP, `${name}-check.yaml`);
      fs.writeFileSync(file, this.config(1, [2, 3], { fallbackPort: 4 }));
      const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/l4lb'), 'check', '-c', file], { encoding: 'utf8' });
      return r.status === 0 ? null : `${r.stdout}${r.stderr}`.trim() || `exit ${r.status}`;
    },
  };
}

/** The routes workloads' own LBs: the l4lb variants of bench/routes.mjs, and `direct` (no LB: the client dials the backend). */
function routeCatalogue() {
  const cat = Object.fromEntries(Object.entries(L4LB_VARIANTS).map(([name, v]) => [name, l4lbLB(name, { variant: v })]));
  cat.direct = { name: 'direct', kind: 'direct' };
  return cat;
}

/** name → { kind, workers?, logLevel?, start(port, backends) → child } */
function lbCatalogue() {
  const cat = {};
  const l4lb = l4lbLB;
  lbCatalogue.plain = () => l4lb('l4lb');
  if (opt.workers) for (const n of opt.workers) cat[`l4lb-w${n}`] = l4lb(`l4lb-w${n}`, { workers: n });
  else cat.l4lb = l4lb('l4lb');
  if (opt.info) cat['l4lb-info'] = l4lb('l4lb-info', { level: 'info' });
  cat.bare = {
    name: 'bare',
    kind: 'bare',
    start: (port, backends, tag) => start(`bare-${tag}`, process.execPath, [path.join(HERE, 'bare-relay.mjs'), String(port), ...backends.map((b) => `127.0.0.1:${b}`)]),
  };
  cat.haproxy = {
    name: 'haproxy',
    kind: 'haproxy',
    available: () => (have('haproxy') ? null : 'haproxy is not installed (apt-get install haproxy)'),
    start(port, backends, tag) {
      const maxconn = Math.floor((NOFILE - 100) / 2);
      const cfg = [
        'global',
        '  nbthread 1',
        `  maxconn ${maxconn}`,
        'defaults',
        '  mode tcp',
        `  maxconn ${maxconn}`,
        '  timeout connect 5s',
        '  timeout client 1h',
        '  timeout server 1h',
        'frontend fe',
        `  bind 127.0.0.1:${port}`,
        '  default_backend be',
        'backend be',
        '  balance source',
        '  hash-type consistent',
        ...backends.map((b, i) => `  server b${i + 1} 127.0.0.1:${b}`),
      ].join('\n');
      const file = path.join(TMP, `haproxy-${tag}.cfg`);
      fs.writeFileSync(file, `${cfg}\n`);
      return start(`haproxy-${tag}`, 'haproxy', ['-db', '-f', file]);
    },
  };
  cat.nginx = {
    name: 'nginx',
    kind: 'nginx',
    available: () => (!have('nginx') ? 'nginx is not installed (apt-get install nginx libnginx-mod-stream)' : !fs.existsSync(NGINX_STREAM) ? `nginx stream module missing: ${NGINX_STREAM} (apt-get install libnginx-mod-stream)` : null),
    start(port, backends, tag) {
      const dir = path.join(TMP, `nginx-${tag}`);
      fs.mkdirSync(dir, { recursive: true });
      const cfg = [
        `load_module ${NGINX_STREAM};`,
        ...(process.getuid?.() === 0 ? ['user nobody nogroup;'] : []),
        'worker_processes 1;',
        'daemon off;',
        `pid ${dir}/nginx.pid;`,
        'error_log stderr warn;',
        `worker_rlimit_nofile ${NOFILE};`,
        `events { worker_connections ${NOFILE}; }`,
        'stream {',
        '  upstream be {',
        '    hash $remote_addr consistent;',
        ...backends.map((b) => `    server 127.0.0.1:${b};`),
        '  }',
        '  server {',
        `    listen 127.0.0.1:${port};`,
        '    proxy_pass be;',
        '    proxy_connect_timeout 5s;',
        '    proxy_timeout 1h;',
        '  }',
        '}',
      ].join('\n');
      fs.writeFileSync(path.join(dir, 'nginx.conf'), `${cfg}\n`);
      return start(`nginx-${tag}`, 'nginx', ['-p', dir, '-e', 'stderr', '-c', path.join(dir, 'nginx.conf')]);
    },
  };
  return cat;
}

/** Warnings and errors an LB wrote while running (l4lb: JSON lines at warn or above; others: stderr). */
function lbComplaints(lb, child) {
  const lines = [];
  if (lb.kind === 'l4lb') {
    let text = '';
    try {
      text = fs.readFileSync(child.outFile, 'utf8');
    } catch {
      /* none */
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        if (JSON.parse(line).level >= 40) lines.push(line);
      } catch {
        lines.push(line);
      }
    }
  }
  try {
    lines.push(...fs.readFileSync(child.errFile, 'utf8').split('\n').filter(Boolean));
  } catch {
    /* none */
  }
  if (lb.kind === 'haproxy') return lines.filter((l) => !/^\[NOTICE\]|Cannot raise FD limit|FD limit .* too low|Proxy .* started/.test(l));
  return lines;
}

/** Group lines by their shape (numbers and addresses blanked) so a flood reads as a few lines with counts. */
function summarizeLines(lines, max = 12) {
  const byShape = new Map();
  for (const l of lines) {
    let shape = l;
    try {
      const j = JSON.parse(l);
      delete j.time;
      delete j.pid;
      delete j.hostname;
      shape = JSON.stringify(j);
    } catch {
      /* text */
    }
    shape = shape.replace(/\d+(\.\d+)*/g, 'N');
    const e = byShape.get(shape) ?? { count: 0, example: l };
    e.count++;
    byShape.set(shape, e);
  }
  return [...byShape.values()].sort((a, b) => b.count - a.count).slice(0, max).map((e) => ({ count: e.count, example: e.example.slice(0, 600) }));
}

// ---------------------------------------------------------------- backends

const BE = { iperf: null, redis: null, hold: null, answer: null, banner: null };

async function startIperf() {
  const ports = [await freePort(), await freePort()];
  const procs = ports.map((p, i) => start(`iperf3-s${i + 1}-${p}`, 'iperf3', ['-s', '-p', String(p)]));
  await Promise.all(procs.map((c, i) => waitListening(c, [ports[i]])));
  BE.iperf = { ports, procs };
}

async function startRedis() {
  const ports = [await freePort(), await freePort()];
  const procs = ports.map((p, i) =>
    start(`redis-${i + 1}`, 'redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxclients', String(Math.max(1000, NOFILE - 200)), '--daemonize', 'no']),
  );
  await Promise.all(procs.map((c, i) => waitListening(c, [ports[i]])));
  BE.redis = { ports, procs };
}

async function startHold() {
  const ports = [await freePort(), await freePort()];
  const child = start('idle-hold', process.execPath, [path.join(HERE, 'idle-hold.mjs'), ...ports.map(String)], { stdout: 'pipe' });
  child.held = 0;
  lineReader(child.stdout, (l) => {
    try {
      child.held = JSON.parse(l).held;
    } catch {
      /* ignore */
    }
  });
  await waitListening(child, ports);
  BE.hold = { ports, procs: [child], child };
}

/** Routes workloads: two backends answering a ClientHello with ROUTED, one (the default route's pool) with FALLBACK. */
async function startAnswer() {
  const ports = [await freePort(), await freePort()];
  const fallbackPort = await freePort();
  const child = start('answer', process.execPath, [path.join(HERE, 'answer-backend.mjs'), ...ports.map((p) => `reply-${ROUTED}:${p}`), `reply-${FALLBACK}:${fallbackPort}`]);
  await waitListening(child, [...ports, fallbackPort]);
  BE.answer = { ports, fallbackPort, procs: [child] };
}

/** Two server-speaks-first backends: a banner at accept. */
async function startBanner() {
  const ports = [await freePort(), await freePort()];
  const child = start('banner', process.execPath, [path.join(HERE, 'answer-backend.mjs'), ...ports.map((p) => `banner:${p}`)]);
  await waitListening(child, ports);
  BE.banner = { ports, procs: [child] };
}

async function ensureBackends(kind) {
  const be = BE[kind];
  if (be && be.procs.every((p) => p.exited === null)) return;
  if (be) {
    note(`${kind} backend died (${be.procs.map((p) => JSON.stringify(p.exited)).join(', ')}): restarting it`);
    for (const p of be.procs) await stop(p, 500);
  }
  if (kind === 'iperf') await startIperf();
  if (kind === 'redis') await startRedis();
  if (kind === 'hold') await startHold();
  if (kind === 'answer') await startAnswer();
  if (kind === 'banner') await startBanner();
}

function lineReader(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

// ---------------------------------------------------------------- workloads

/** Each workload: which backends, and how to measure; returns figures (numbers) and problems. */
const WORKLOADS = {
  bulk: { backend: 'iperf', measure: (ctx) => bulk(ctx, 1) },
  bulk4: { backend: 'iperf', measure: (ctx) => bulk(ctx, 4) },
  ping: { backend: 'redis', measure: (ctx) => ping(ctx) },
  conn: { backend: 'redis', measure: (ctx) => connRate(ctx) },
  c2000: { backend: 'redis', measure: (ctx) => conc2000(ctx) },
  idle: { backend: 'hold', measure: (ctx) => idle(ctx) },
  // fresh: new backends (new ports) for every measurement, so the LB's connects to them never meet the TIME_WAIT
  // entries that the measurement before left on the same 4-tuples (thousands of new connections per measurement)
  hello: { backend: 'answer', fresh: true, measure: (ctx) => helloRate(ctx) },
  banner: { backend: 'banner', fresh: true, measure: (ctx) => bannerTtfb(ctx) },
};

async function iperf(port, streams, reverse) {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(S.T), '-J', ...(S.omit ? ['-O', String(S.omit)] : []), ...(streams > 1 ? ['-P', String(streams)] : []), ...(reverse ? ['-R'] : [])];
  for (let attempt = 1; ; attempt++) {
    const r = await run('iperf3', args, (S.T + S.omit + 30) * 1000);
    let j = null;
    try {
      j = JSON.parse(r.stdout);
    } catch {
      /* not json */
    }
    const err = r.timedOut ? 'timed out' : j?.error ?? (r.code !== 0 ? `exit ${r.code}: ${r.stderr.trim()}` : null);
    if (!err && j?.end?.sum_received) {
      // All bytes moved (omitted warm-up seconds included), for CPU per GB; Gbit/s from the receiver, omit excluded.
      const moved = j.intervals.reduce((s, iv) => s + iv.sum.bytes, 0);
      return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: Math.max(moved, j.end.sum_received.bytes) };
    }
    if (/busy/i.test(err) && attempt < 4) {
      await sleep(1000);
      continue;
    }
    return { error: `iperf3 ${args.join(' ')}: ${err}` };
  }
}

async function bulk(ctx, streams) {
  const fig = {};
  const problems = [];
  let cpu = 0;
  let bytes = 0;
  for (const reverse of [false, true]) {
    const c0 = cpuSeconds(ctx.pid);
    const r = await iperf(ctx.port, streams, reverse);
    const c1 = cpuSeconds(ctx.pid);
    if (r.error) {
      problems.push(r.error);
      continue;
    }
    fig[`bulk${streams}_${reverse ? 'rev' : 'fwd'}_gbps`] = r.gbps;
    cpu += c1 - c0;
    bytes += r.bytes;
  }
  if (bytes > 0 && problems.length === 0) fig[streams === 1 ? 'cpu_s_per_gb' : 'cpu_s_per_gb_p4'] = cpu / (bytes / 1e9);
  return { fig, problems };
}

/** redis-benchmark PING (RESP multi-bulk), CSV: rps, avg, min, p50, p95, p99, max. */
async function redisBench(port, args, n, clients) {
  const all = ['-h', '127.0.0.1', '-p', String(port), '-t', 'ping_mbulk', '-n', String(n), '-c', String(clients), '--csv', ...args];
  const r = await run('redis-benchmark', all, Math.max(60_000, n / 500 * 1000));
  const row = r.stdout.split('\n').find((l) => l.startsWith('"PING'));
  const errLines = r.stderr.split('\n').filter((l) => l.trim() && !/^WARNING: (Could not fetch server CONFIG|Keepalive disabled)/.test(l));
  const cells = row ? row.split(',').map((c) => Number(c.replace(/"/g, ''))) : null;
  const out = { errors: errLines.length + (r.timedOut ? 1 : 0), errLines: errLines.slice(0, 5) };
  if (r.timedOut) out.errLines.unshift(`redis-benchmark ${all.join(' ')}: timed out after ${r.ms} ms`);
  else if (r.code !== 0) out.errLines.unshift(`redis-benchmark ${all.join(' ')}: exit ${r.code}`);
  if (cells && !r.timedOut) Object.assign(out, { rps: cells[1], p50: cells[4], p99: cells[6] });
  return out;
}

async function warmRedis(ctx) {
  await redisBench(ctx.port, ['-k', '0'], opt.quick ? 500 : 1000, 10);
  await redisBench(ctx.port, [], opt.quick ? 2000 : 5000, 50);
}

async function ping(ctx) {
  await warmRedis(ctx);
  const c0 = cpuSeconds(ctx.pid);
  const r = await redisBench(ctx.port, [], S.pingN, 50);
  const cpu = cpuSeconds(ctx.pid) - c0;
  const fig = {};
  if (r.rps) Object.assign(fig, { ping_krps: r.rps / 1000, ping_p50_ms: r.p50, ping_p99_ms: r.p99, cpu_us_per_ping: (cpu / S.pingN) * 1e6 });
  return { fig, problems: r.errLines };
}

async function connRate(ctx) {
  await warmRedis(ctx);
  const c0 = cpuSeconds(ctx.pid);
  const r = await redisBench(ctx.port, ['-k', '0'], S.connN, 50);
  const cpu = cpuSeconds(ctx.pid) - c0;
  const fig = {};
  if (r.rps) Object.assign(fig, { conn_per_s: r.rps, conn_p99_ms: r.p99, cpu_us_per_conn: (cpu / S.connN) * 1e6 });
  return { fig, problems: r.errLines };
}

async function conc2000(ctx) {
  await warmRedis(ctx);
  const r = await redisBench(ctx.port, [], S.c2000N, 2000);
  const fig = { c2000_errors: r.errors };
  if (r.rps) Object.assign(fig, { c2000_krps: r.rps / 1000, c2000_p99_ms: r.p99 });
  return { fig, problems: r.errLines };
}

// ---------------------------------------------------------------- routes workloads (bench/routes.mjs)

let hellos = null; // { file, min, max, count }
async function ensureHellos() {
  if (!hellos) {
    const file = path.join(TMP, 'hellos.json');
    hellos = { file, ...(await writeHellos(file)) };
  }
  return hellos;
}

async function helloClient(port, n, conc, maxS) {
  const h = await ensureHellos();
  const r = await run(process.execPath, [path.join(HERE, 'hello-client.mjs'), String(port), String(n), String(conc), String(maxS * 1000), h.file], (maxS + 20) * 1000);
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `hello-client: ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.trim().slice(0, 300)}` };
  }
}

/** TLS-ClientHello connection rate: warm-up (every name once or more), then S.helloN connections, 50 at a time. */
async function helloRate(ctx) {
  const problems = [];
  const warm = await helloClient(ctx.port, S.helloWarm, 10, S.helloMaxS);
  if (warm.error) return { fig: {}, problems: [`warm-up: ${warm.error}`] };
  const c0 = ctx.pid ? cpuSeconds(ctx.pid) : 0;
  const r = await helloClient(ctx.port, S.helloN, S.helloConc, S.helloMaxS);
  const cpu = ctx.pid ? cpuSeconds(ctx.pid) - c0 : 0;
  if (r.error) return { fig: {}, problems: [r.error] };
  const fig = {};
  if (r.done) {
    Object.assign(fig, { hello_conn_per_s: r.conn_per_s, hello_p50_ms: r.p50_ms, hello_p99_ms: r.p99_ms, hello_fallback: r.answers[FALLBACK] ?? 0 });
    if (ctx.pid) fig.hello_cpu_us_per_conn = (cpu / r.done) * 1e6;
  }
  if (r.errors) problems.push(`hello: ${r.errors} of ${r.done + r.errors} connections failed: ${JSON.stringify(r.codes)}`);
  if (r.done < S.helloN) problems.push(`hello: ${r.done} of ${S.helloN} connections done within ${S.helloMaxS} s`);
  const other = Object.entries(r.answers).filter(([k]) => k !== ROUTED);
  if (other.length) problems.push(`hello: answers other than "${ROUTED}" (routed pools): ${JSON.stringify(Object.fromEntries(other))} ("${FALLBACK}" = the default route: the SNI route was missed)`);
  return { fig, problems };
}

async function bannerClient(port, n, maxS) {
  const r = await run(process.execPath, [path.join(HERE, 'banner-client.mjs'), String(port), String(n), String(maxS * 1000)], (maxS + 20) * 1000);
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `banner-client: ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.trim().slice(0, 300)}` };
  }
}

/** Server speaks first: time from connect to the banner's first byte, one connection at a time. */
async function bannerTtfb(ctx) {
  const problems = [];
  const warm = await bannerClient(ctx.port, S.bannerWarm, S.bannerMaxS);
  if (warm.error) return { fig: {}, problems: [`warm-up: ${warm.error}`] };
  const r = await bannerClient(ctx.port, S.bannerN, S.bannerMaxS);
  if (r.error) return { fig: {}, problems: [r.error] };
  const fig = {};
  if (r.done) Object.assign(fig, { banner_p50_ms: r.p50_ms, banner_p99_ms: r.p99_ms, banner_mean_ms: r.mean_ms });
  if (r.errors) problems.push(`banner: ${r.errors} of ${r.done + r.errors} connections failed: ${JSON.stringify(r.codes)}`);
  if (r.done + r.errors < S.bannerN) problems.push(`banner: ${r.done + r.errors} of ${S.bannerN} connections within ${S.bannerMaxS} s`);
  return { fig, problems };
}

async function idle(ctx) {
  const problems = [];
  const hold = BE.hold.child;
  const n = S.idleN;
  await sleep(500);
  const base = rssKiB(ctx.pid);
  const heldBefore = hold.held;
  const client = start(`idle-client-${ctx.tag}`, process.execPath, [path.join(HERE, 'idle-client.mjs'), String(ctx.port), String(n)], { stdout: 'pipe' });
  let state = { connected: 0, errors: 0, closed: 0, pending: n, codes: {} };
  lineReader(client.stdout, (l) => {
    try {
      state = JSON.parse(l);
    } catch {
      /* ignore */
    }
  });
  const t0 = Date.now();
  const limit = 30_000 + n * 5;
  while (Date.now() - t0 < limit && state.connected + state.errors < n) await sleep(100);
  while (Date.now() - t0 < limit && hold.held - heldBefore < state.connected - state.closed) await sleep(100);
  await sleep(2000); // settle
  const held = hold.held - heldBefore;
  const rss = rssKiB(ctx.pid);
  const open = state.connected - state.closed;
  if (state.errors) problems.push(`idle: ${state.errors} of ${n} client connections failed: ${JSON.stringify(state.codes)}`);
  if (state.closed) problems.push(`idle: ${state.closed} client connections were closed by the LB while idle`);
  if (held < open) problems.push(`idle: only ${held} of ${open} client connections reached a backend`);
  const fig = { idle_conns: held };
  if (held > 0) fig.idle_kib_per_conn = (rss - base) / held;
  await stop(client, 2000);
  // Wait for the backend side to drain before the next LB, so counts stay per LB.
  const t1 = Date.now();
  while (hold.held > heldBefore && Date.now() - t1 < 10_000) await sleep(100);
  return { fig, problems };
}

// ---------------------------------------------------------------- one measurement

async function measure(lb, wl, round) {
  const W = WORKLOADS[wl];
  if (W.fresh && BE[W.backend]) {
    for (const p of BE[W.backend].procs) await stop(p, 1000);
    BE[W.backend] = null;
  }
  await ensureBackends(W.backend);
  const tag = `r${round + 1}-${wl}`;
  if (lb.kind === 'direct') {
    // No LB: the client dials the first backend. No CPU or RSS of an LB.
    const res = await W.measure({ port: BE[W.backend].ports[0], pid: null, tag: `direct-${tag}` });
    return { fig: res.fig, problems: res.problems, complaints: [], expected: 0 };
  }
  const port = await freePort();
  const child = lb.start(port, BE[W.backend].ports, tag, BE[W.backend]);
  const problems = [];
  let fig = {};
  try {
    await waitListening(child, [port]);
    await sleep(lb.workers && lb.workers > 1 ? 800 : 300); // let it (and every worker) settle
    const startRss = rssKiB(child.pid) / 1024;
    const res = await W.measure({ port, pid: child.pid, tag: `${lb.name}-${tag}` });
    fig = { ...res.fig, rss_start_mb: startRss };
    problems.push(...res.problems);
    fig[`rss_${wl}_mb`] = hwmKiB(child.pid) / 1024;
    if (child.exited) problems.push(`${lb.name} EXITED during ${wl}: ${JSON.stringify(child.exited)}`);
  } catch (e) {
    problems.push(`${lb.name} ${wl}: ${e.message}`);
  } finally {
    await stop(child);
  }
  let complaints = lbComplaints(lb, child);
  // iperf3 ends each test by resetting its data connections; nginx logs that at level error.
  const expected = lb.kind === 'nginx' && wl.startsWith('bulk') ? complaints.filter((l) => /\((104: Connection reset by peer|32: Broken pipe)\)/.test(l)) : [];
  if (expected.length) complaints = complaints.filter((l) => !expected.includes(l));
  return { fig, problems, complaints, expected: expected.length };
}

// ---------------------------------------------------------------- figures and tables

const FIGS = [
  ['bulk1_fwd_gbps', 'bulk, 1 stream, client→server, Gbit/s', 'up'],
  ['bulk1_rev_gbps', 'bulk, 1 stream, server→client (-R), Gbit/s', 'up'],
  ['bulk4_fwd_gbps', 'bulk, 4 streams (-P 4), client→server, Gbit/s', 'up'],
  ['bulk4_rev_gbps', 'bulk, 4 streams (-P 4), server→client, Gbit/s', 'up'],
  ['cpu_s_per_gb', 'LB CPU-s per GB relayed (1 stream)', 'down'],
  ['cpu_s_per_gb_p4', 'LB CPU-s per GB relayed (4 streams)', 'down'],
  ['ping_krps', 'PING k req/s, 50 conns', 'up'],
  ['ping_p50_ms', 'PING p50 ms', 'down'],
  ['ping_p99_ms', 'PING p99 ms', 'down'],
  ['cpu_us_per_ping', 'LB CPU µs per PING', 'down'],
  ['conn_per_s', 'new connections/s (-k 0)', 'up'],
  ['conn_p99_ms', 'new connection + PING p99 ms', 'down'],
  ['cpu_us_per_conn', 'LB CPU µs per new connection', 'down'],
  ['c2000_krps', '2,000 conns: k req/s', 'up'],
  ['c2000_p99_ms', '2,000 conns: p99 ms', 'down'],
  ['c2000_errors', '2,000 conns: errors', 'down'],
  ['idle_kib_per_conn', 'KiB per idle proxied conn (above baseline)', 'down'],
  ['idle_conns', 'idle conns held', 'info'],
  ['rss_start_mb', 'RSS MB at start (listening, no traffic)', 'down'],
  ['rss_bulk_mb', 'peak RSS MB, bulk 1 stream', 'down'],
  ['rss_bulk4_mb', 'peak RSS MB, bulk 4 streams', 'down'],
  ['rss_ping_mb', 'peak RSS MB, PING', 'down'],
  ['rss_conn_mb', 'peak RSS MB, new connections', 'down'],
  ['rss_c2000_mb', 'peak RSS MB, 2,000 conns', 'down'],
  ['rss_idle_mb', 'peak RSS MB, idle conns', 'down'],
  ['peak_rss_mb', 'peak RSS MB, any workload', 'down'],
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '–';
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

function summarize(samples, lbNames, figs = FIGS) {
  // samples[lb][fig] = [values per round]
  const sum = {};
  for (const lb of lbNames) {
    sum[lb] = {};
    const per = samples[lb] ?? {};
    const rounds = per.__rounds ?? [];
    // peak RSS over any workload, per round
    const peak = rounds.map((r) => Math.max(...Object.entries(r).filter(([k]) => k.startsWith('rss_') && k !== 'rss_start_mb').map(([, v]) => v))).filter(Number.isFinite);
    if (peak.length) per.peak_rss_mb = peak;
    for (const [k] of figs) {
      const xs = per[k];
      if (!xs || xs.length === 0) continue;
      sum[lb][k] = { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length, values: xs };
    }
  }
  return sum;
}

function markdown(meta, sum, lbNames, problems, extra = '') {
  const L = [];
  const cols = lbNames.filter((l) => Object.keys(sum[l] ?? {}).length);
  L.push(`# l4lb bench, ${meta.date}`);
  L.push('');
  const m = meta.machine;
  L.push(`- machine: ${m.nproc} CPUs, ${m.cpu}, ${m.mem_gb} GB, kernel ${m.kernel}, ulimit -n ${m.nofile}, load average ${m.loadavg_start} at start, ${meta.loadavg_end} at end`);
  L.push(`- versions: node ${m.versions.node}, l4lb ${m.versions.l4lb} (${meta.git}), ${m.versions.haproxy ?? 'haproxy: not installed'}, ${m.versions.nginx ?? 'nginx: not installed'}, ${m.versions.redis ?? 'redis: not installed'}, ${m.versions.iperf3 ?? 'iperf3: not installed'}`);
  L.push(`- run: ${meta.settings.quick ? '--quick, ' : ''}${meta.settings.rounds} round(s), order rotated each round; bulk ${meta.settings.T}s${meta.settings.omit ? ` (+${meta.settings.omit}s omitted)` : ''} per direction; PING n=${meta.settings.pingN}; new conns n=${meta.settings.connN}; 2,000 conns n=${meta.settings.c2000N}; idle ${meta.settings.idleN} conns${meta.settings.idleN < meta.settings.idleWanted ? ` (${meta.settings.idleWanted} wanted; capped by ulimit -n ${m.nofile}: the LB holds 2 fds per connection)` : ''}${meta.workloads?.includes('hello') ? `; TLS hellos n=${meta.settings.helloN}` : ''}${meta.workloads?.includes('banner') ? `; banner n=${meta.settings.bannerN}` : ''}; ${meta.elapsed_s}s in all`);
  L.push(`- cells: median (min–max over rounds); ↑ higher is better, ↓ lower is better`);
  L.push('');
  const table = (title, cell) => {
    L.push(`## ${title}`);
    L.push('');
    L.push(`| figure | ${cols.join(' | ')} |`);
    L.push(`|---|${cols.map(() => '---:').join('|')}|`);
    for (const [k, label, dir] of FIGS) {
      if (!cols.some((c) => sum[c][k])) continue;
      const arrow = dir === 'up' ? ' ↑' : dir === 'down' ? ' ↓' : '';
      L.push(`| ${label}${arrow} | ${cols.map((c) => cell(c, k)).join(' | ')} |`);
    }
    L.push('');
  };
  if (cols.length) table('Figures', (c, k) => {
    const s = sum[c][k];
    if (!s) return '–';
    return s.n > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
  });
  const ratio = (ref) => (c, k) => {
    const a = sum[c][k];
    const b = sum[ref]?.[k];
    if (!a || !b || k === 'idle_conns' || k === 'c2000_errors') return '–';
    if (b.median === 0) return a.median === 0 ? '1.00' : '∞';
    return `${(a.median / b.median).toFixed(2)}×`;
  };
  if (!cols.length) L.push('_No figures of the bulk / PING / connection / idle workloads in this run._\n');
  else if (sum.haproxy && Object.keys(sum.haproxy).length) table('Ratio to HAProxy (median ÷ median)', ratio('haproxy'));
  else L.push('_No HAProxy figures in this run: no ratio to HAProxy._\n');
  if (cols.length && sum.bare && Object.keys(sum.bare).length) table('Ratio to the bare Node relay (median ÷ median)', ratio('bare'));
  if (extra) L.push(extra, '');
  if (problems.length) {
    L.push('## Problems');
    L.push('');
    for (const p of problems) L.push(`- ${p}`);
    L.push('');
  }
  return L.join('\n');
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  const meta = { date: new Date().toISOString(), machine: machine(), settings: { ...S, idleWanted, quick: opt.quick }, git: sh('git', ['-C', ROOT, 'describe', '--always', '--dirty']) ?? '?' };
  const cat = lbCatalogue();
  let lbNames = Object.keys(cat);
  if (opt.only) {
    lbNames = lbNames.filter((n) => opt.only.includes(n) || (n.startsWith('l4lb-w') && opt.only.includes('l4lb')));
    for (const o of opt.only) if (!cat[o] && !ROUTE_LBS.includes(o) && !(o === 'l4lb' && opt.workers)) note(`--only ${o}: no such LB in this run (${Object.keys(cat).join(', ')})`);
  }
  const usable = (lb) => {
    const why = lb.available?.() ?? (lb.kind === 'l4lb' ? (() => {
      const err = lb.check();
      return err ? `l4lb rejects the config for ${lb.name}${lb.workers !== null ? ` (workers: ${lb.workers})` : ''}: ${err.replace(/\n/g, '; ')}` : null;
    })() : null);
    if (why) note(`SKIPPING ${lb.name}: ${why}`);
    return !why;
  };
  const lbs = lbNames.map((n) => cat[n]).filter(usable);
  if (opt.workers && !lbs.some((l) => l.workers !== null) && (!opt.only || opt.only.includes('l4lb'))) {
    note('no `workers` variant of l4lb could run: measuring plain l4lb (no workers key) instead');
    const plain = lbCatalogue.plain();
    lbs.unshift(plain);
  }
  // --quick skips the idle-connection workload unless asked for by --workloads.
  let workloads = opt.workloads ?? (opt.quick ? ALL_WORKLOADS.filter((w) => w !== 'idle') : ALL_WORKLOADS);
  if (!have('iperf3') && workloads.some((w) => w.startsWith('bulk'))) {
    note('SKIPPING bulk workloads: iperf3 is not installed (apt-get install iperf3)');
    workloads = workloads.filter((w) => !w.startsWith('bulk'));
  }
  if ((!have('redis-server') || !have('redis-benchmark')) && workloads.some((w) => ['ping', 'conn', 'c2000'].includes(w))) {
    note('SKIPPING ping, conn, c2000: redis-server / redis-benchmark are not installed (apt-get install redis-server redis-tools)');
    workloads = workloads.filter((w) => !['ping', 'conn', 'c2000'].includes(w));
  }
  if (workloads.includes('idle') && S.idleN < idleWanted) note(`idle: ${S.idleN} connections instead of ${idleWanted}: ulimit -n is ${NOFILE} and the LB needs two fds per connection`);
  // The routes workloads have their own LBs: l4lb's route variants (with --only: when named, or when l4lb is), then
  // bare (hello: the no-peek floor) or every LB of the run but l4lb-info (banner), and `direct` (banner).
  const rcat = routeCatalogue();
  const wanted = (name) => !opt.only || opt.only.includes(name) || (name.startsWith('l4lb-') && opt.only.includes('l4lb'));
  const variants = Object.fromEntries(Object.entries(rcat).filter(([n, lb]) => lb.kind === 'l4lb' && workloads.includes(lb.variant.workload) && wanted(n) && usable(lb)));
  const setOf = {
    hello: [...Object.values(variants).filter((v) => v.variant.workload === 'hello'), ...lbs.filter((l) => l.kind === 'bare')],
    banner: [...(wanted('direct') ? [rcat.direct] : []), ...Object.values(variants).filter((v) => v.variant.workload === 'banner'), ...lbs.filter((l) => l.name !== 'l4lb-info')],
  };
  for (const wl of ROUTE_WORKLOADS) {
    if (workloads.includes(wl) && setOf[wl].length === 0) {
      note(`SKIPPING ${wl}: none of its LBs is in this run`);
      workloads = workloads.filter((w) => w !== wl);
    }
  }
  const lbsOf = (wl) => setOf[wl] ?? lbs;
  if (workloads.length === 0 || workloads.every((wl) => lbsOf(wl).length === 0)) die('nothing to run');

  console.log(`bench: ${workloads.map((wl) => `${wl} × ${lbsOf(wl).map((l) => l.name).join(',')}`).join('; ')}; ${S.rounds} round(s); scratch ${TMP}`);
  console.log(`bench: load average ${meta.machine.loadavg_start} (${meta.machine.nproc} CPUs): absolute figures on a busy machine are noisy, ratios in one run hold better`);

  const mainSamples = {};
  const routeSamples = { hello: {}, banner: {} };
  const problems = [];
  const raw = [];
  for (let round = 0; round < S.rounds; round++) {
    for (const wl of workloads) {
      const set = lbsOf(wl);
      const order = set.map((_, i) => set[(i + round) % set.length]);
      const samples = routeSamples[wl] ?? mainSamples;
      for (const lb of order) {
        // The info-level l4lb: one round only, and not the idle or (in --quick) bulk workloads.
        if (lb.name === 'l4lb-info' && (round > 0 || wl === 'idle' || (opt.quick && wl.startsWith('bulk')))) continue;
        const t = Date.now();
        process.stdout.write(`round ${round + 1}/${S.rounds} ${wl.padEnd(6)} ${lb.name.padEnd(10)} `);
        if (wl === 'hello') await ensureHellos();
        const r = await measure(lb, wl, round);
        const shown = Object.entries(r.fig).filter(([k]) => !k.startsWith('rss_')).map(([k, v]) => `${k}=${fmt(v)}`).join(' ');
        const rss = r.fig[`rss_${wl}_mb`];
        console.log(`${shown}${rss === undefined ? '' : ` rss=${fmt(rss)}MB`} (${((Date.now() - t) / 1000).toFixed(1)}s)`);
        samples[lb.name] ??= { __rounds: [] };
        const s = samples[lb.name];
        s.__rounds[round] ??= {};
        for (const [k, v] of Object.entries(r.fig)) {
          (s[k] ??= []).push(v);
          if (k.startsWith('rss_') && k !== 'rss_start_mb') s.__rounds[round][k] = v;
        }
        for (const p of r.problems) {
          console.log(`    problem: ${p}`);
          problems.push(`round ${round + 1}, ${wl}, ${lb.name}: ${p}`);
        }
        if (r.complaints.length) {
          const grouped = summarizeLines(r.complaints);
          console.log(`    ${lb.name} wrote ${r.complaints.length} warning/error line(s):`);
          for (const g of grouped) console.log(`      ${g.count}× ${g.example}`);
          problems.push(`round ${round + 1}, ${wl}, ${lb.name}: ${r.complaints.length} warning/error log line(s): ${grouped.map((g) => `${g.count}× \`${g.example}\``).join('; ')}`);
        }
        raw.push({ round: round + 1, workload: wl, lb: lb.name, figures: r.fig, problems: r.problems, complaints: summarizeLines(r.complaints), expected_reset_lines: r.expected });
      }
    }
  }
  meta.workloads = workloads;
  meta.loadavg_end = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  meta.elapsed_s = Math.round((Date.now() - t0) / 1000);
  const names = lbs.map((l) => l.name);
  const sum = summarize(mainSamples, names);
  const allProblems = [...notes, ...problems];
  let routes = null;
  let routesMd = '';
  if (workloads.some((w) => ROUTE_WORKLOADS.includes(w))) {
    let today = null;
    try {
      today = JSON.parse(fs.readFileSync(path.join(ROOT, `${TODAY.file}.json`), 'utf8')).summary;
    } catch {
      /* absent: the section says so */
    }
    const rsum = {
      hello: summarize(routeSamples.hello, setOf.hello.map((l) => l.name), HELLO_FIGS),
      banner: summarize(routeSamples.banner, setOf.banner.map((l) => l.name), BANNER_FIGS),
    };
    const settings = { helloN: S.helloN, helloConc: S.helloConc, helloWarm: S.helloWarm, bannerN: S.bannerN, bannerWarm: S.bannerWarm };
    routes = { summary: rsum, settings, hellos: hellos && { count: hellos.count, min_bytes: hellos.min, max_bytes: hellos.max }, today: TODAY };
    routesMd = routesMarkdown({ sum: rsum, settings, hellos, main: sum, today, fmt });
  }
  const md = markdown(meta, sum, names, allProblems, routesMd);

  const d = new Date();
  const pad = (x) => String(x).padStart(2, '0');
  const stamp = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}`;
  const outDir = path.join(HERE, 'results');
  const base = opt.out ?? path.join(outDir, stamp);
  fs.mkdirSync(path.dirname(base), { recursive: true });
  fs.writeFileSync(`${base}.json`, `${JSON.stringify({ meta, lbs: names, workloads, summary: sum, routes, runs: raw, problems: allProblems }, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, `${md}\n`);
  console.log(`\n${md}`);
  console.log(`bench: results in ${path.relative(ROOT, base)}.json and .md`);

  for (const kind of Object.keys(BE)) for (const p of BE[kind]?.procs ?? []) await stop(p, 1000);
}

await main();
