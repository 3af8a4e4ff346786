// Backends for the routes workloads (bench/README.md). Each argument is MODE:PORT on 127.0.0.1:
//   reply-X:PORT  writes the one byte X when the first client bytes arrive (a TLS ClientHello), then
//                 reads and drops the rest; ends when the client ends.
//   banner:PORT   writes a banner line at accept, before reading anything (server speaks first: SMTP,
//                 MySQL, FTP), then reads and drops.
// Usage: node answer-backend.mjs reply-A:PORT reply-A:PORT reply-D:PORT banner:PORT ...
import net from 'node:net';
const BANNER = Buffer.from('220 bench.example ESMTP ready\r\n');
for (const arg of process.argv.slice(2)) {
  const [mode, port] = [arg.slice(0, arg.lastIndexOf(':')), Number(arg.slice(arg.lastIndexOf(':') + 1))];
  let onConn;
  if (mode === 'banner') {
    onConn = (s) => {
      s.on('error', () => {});
      s.write(BANNER);
      s.resume();
    };
  } else if (/^reply-.$/.test(mode)) {
    const byte = Buffer.from(mode.slice(6));
    onConn = (s) => {
      s.on('error', () => {});
      s.once('data', () => {
        s.write(byte);
        s.resume();
      });
    };
  } else {
    console.error(`answer-backend: unknown mode ${mode}`);
    process.exit(2);
  }
  net.createServer({ noDelay: true }, onConn).listen({ port, host: '127.0.0.1', backlog: 4096 });
}
