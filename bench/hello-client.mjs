// Client for the `hello` workload (bench/README.md): new connections, each one: connect, write one
// pre-captured TLS ClientHello (raw bytes, no TLS stack in the loop), wait for the backend's first
// answer byte, close. CONCURRENCY connections at a time, N in all, no new ones after MAX_MS. Hellos
// are taken in turn from HELLOS (a JSON file: [{name, hex}]), so every name is used evenly. Local
// addresses 127.0.0.2..254 in turn, so that thousands of TIME_WAIT entries from one measurement do
// not crowd one address's ephemeral ports.
// Prints one JSON line: done, errors, answers by first byte, conn/s, p50/p99 ms (connect → answer).
// Usage: node hello-client.mjs PORT N CONCURRENCY MAX_MS HELLOS
import fs from 'node:fs';
import net from 'node:net';
const [port, n, conc, maxMs] = process.argv.slice(2, 6).map(Number);
const hellos = JSON.parse(fs.readFileSync(process.argv[6], 'utf8')).map((h) => Buffer.from(h.hex, 'hex'));
const lat = new Float64Array(n);
const answers = {};
const codes = {};
let started = 0, done = 0, errors = 0, inflight = 0;
const t0 = performance.now();
const deadline = t0 + maxMs;
let tEnd = t0;

function one() {
  if (started >= n || performance.now() > deadline) {
    if (inflight === 0) finish();
    return;
  }
  const i = started++;
  inflight++;
  const ts = performance.now();
  let over = false;
  const s = net.connect({ host: '127.0.0.1', port, noDelay: true, localAddress: `127.0.0.${2 + (i % 253)}` });
  const end = (err) => {
    if (over) return;
    over = true;
    inflight--;
    if (err) {
      errors++;
      codes[err] = (codes[err] ?? 0) + 1;
    }
    s.destroy();
    one();
  };
  s.write(hellos[i % hellos.length]);
  s.once('data', (d) => {
    const k = String.fromCharCode(d[0]);
    answers[k] = (answers[k] ?? 0) + 1;
    tEnd = performance.now();
    lat[done++] = tEnd - ts;
    end(null);
  });
  s.on('error', (e) => end(e.code ?? e.message));
  s.on('close', () => end('closed without an answer'));
}

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  const l = lat.subarray(0, done).sort();
  const q = (p) => (done ? l[Math.min(done - 1, Math.floor(p * done))] : null);
  const secs = (tEnd - t0) / 1000;
  console.log(JSON.stringify({ done, errors, codes, answers, inflight, elapsed_s: secs, conn_per_s: done && secs > 0 ? done / secs : null, p50_ms: q(0.5), p99_ms: q(0.99) }));
  process.exit(0);
}

for (let k = 0; k < conc; k++) one();
// Hard bound: whatever is still open 5 s after the deadline is counted as stuck.
setTimeout(() => {
  if (inflight) codes['still open at the time limit'] = inflight;
  errors += inflight;
  finish();
}, maxMs + 5000).unref();
