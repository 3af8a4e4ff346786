// The floor: a bare Node.js TCP relay, what any Node proxy costs. Usage: node bare-relay.mjs PORT HOST:PORT HOST:PORT...
// Backend by a hash of the client address (round robin would split iperf3's control and data connections).
import net from 'node:net';
const [port, ...list] = process.argv.slice(2);
const backends = list.map((b) => ({ host: b.slice(0, b.lastIndexOf(':')), port: Number(b.slice(b.lastIndexOf(':') + 1)), noDelay: true }));
const pick = (ip = '') => { let h = 0; for (let i = 0; i < ip.length; i++) h = (h * 31 + ip.charCodeAt(i)) >>> 0; return backends[h % backends.length]; };
net.createServer({ noDelay: true }, (client) => {
  const server = net.connect(pick(client.remoteAddress));
  client.pipe(server).pipe(client);
  client.on('error', () => server.destroy());
  server.on('error', () => client.destroy());
}).listen(Number(port), '127.0.0.1', function () { console.log(JSON.stringify({ msg: 'listening', port: this.address().port })); });
