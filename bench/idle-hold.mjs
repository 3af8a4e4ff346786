// Idle backend for the idle-connection workload: accepts and holds, never reads or writes.
// Usage: node idle-hold.mjs PORT [PORT...]; prints {"held":N} lines when the count changes.
import net from 'node:net';
let held = 0;
let shown = -1;
for (const port of process.argv.slice(2)) {
  net.createServer((s) => {
    held++;
    s.on('error', () => {});
    s.on('close', () => held--);
  }).listen(Number(port), '127.0.0.1');
}
setInterval(() => {
  if (held !== shown) console.log(JSON.stringify({ held: (shown = held) }));
}, 100);
