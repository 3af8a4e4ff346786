// Client for the idle-connection workload: opens N connections to 127.0.0.1:PORT from the local
// addresses 127.0.0.2..127.0.0.254 (spread, so no ephemeral port range runs out), holds them until
// SIGTERM or stdin closes. Prints {"connected","errors","closed","pending"} progress lines.
// Usage: node idle-client.mjs PORT N [CONCURRENCY]
import net from 'node:net';
const [port, n, conc = '200'] = process.argv.slice(2).map(Number);
let next = 0, connected = 0, errors = 0, closed = 0, pending = 0;
const codes = {};
const socks = [];
function open() {
  if (next >= n) return;
  const i = next++;
  pending++;
  const s = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.0.${2 + (i % 253)}` });
  let up = false;
  s.on('connect', () => { up = true; connected++; pending--; open(); });
  s.on('error', (e) => { codes[e.code] = (codes[e.code] ?? 0) + 1; if (!up) { errors++; pending--; open(); } });
  s.on('close', () => { if (up) closed++; });
  socks.push(s);
}
for (let k = 0; k < conc; k++) open();
let last = '';
const report = () => {
  const line = JSON.stringify({ connected, errors, closed, pending, codes });
  if (line !== last) console.log((last = line));
};
setInterval(report, 100);
const stop = () => { for (const s of socks) s.destroy(); report(); process.exit(0); };
process.on('SIGTERM', stop);
process.stdin.on('end', stop).resume();
