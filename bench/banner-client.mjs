// Client for the `banner` workload (bench/README.md): time to first byte from a server-speaks-first
// backend. One connection at a time, N in all (no new ones after MAX_MS): connect, send nothing,
// time from net.connect() to the first byte received, close. Prints one JSON line: done, errors,
// p50/p99/mean ms.
// Usage: node banner-client.mjs PORT N MAX_MS
import net from 'node:net';
const [port, n, maxMs] = process.argv.slice(2, 5).map(Number);
const lat = [];
const codes = {};
let errors = 0;
const deadline = performance.now() + maxMs;

function once() {
  return new Promise((resolve) => {
    const ts = performance.now();
    let over = false;
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const end = (err, ms) => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      if (err) {
        errors++;
        codes[err] = (codes[err] ?? 0) + 1;
      } else lat.push(ms);
      s.destroy();
      resolve();
    };
    // One connection may not take more than 10 s (a frontend that waits for client bytes would).
    const timer = setTimeout(() => end('no byte within 10 s'), 10_000);
    s.once('data', () => end(null, performance.now() - ts));
    s.on('error', (e) => end(e.code ?? e.message));
    s.on('close', () => end('closed without a byte'));
  });
}

for (let i = 0; i < n && performance.now() < deadline; i++) await once();
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
console.log(JSON.stringify({ done: lat.length, errors, codes, p50_ms: q(0.5), p99_ms: q(0.99), mean_ms: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null }));
