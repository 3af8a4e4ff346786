/**
 * `npm start`: three demo backends that answer with their own name, l4lb on
 * config/l4lb.yaml in front of them, and a short show of persistence.
 */
import { spawn } from 'node:child_process';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = join(__dirname, '..');
const BACKENDS = [
  ['alpha', 7001],
  ['bravo', 7002],
  ['charlie', 7003],
] as const;
const FRONTEND_PORT = 7000;

function startBackend(name: string, port: number): Promise<Server> {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.write(`${name}\n`);
    sock.pipe(sock);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`demo backend ${name} cannot listen on 127.0.0.1:${port}: ${(err as NodeJS.ErrnoException).code}`)));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

function ask(from: string): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port: FRONTEND_PORT, localAddress: from });
    let got = '';
    sock.setTimeout(2000, () => sock.destroy());
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\n')) sock.end();
    });
    sock.on('error', () => resolve('(error)'));
    sock.on('close', () => resolve(got.trim() || '(closed)'));
  });
}

async function main(): Promise<void> {
  const servers = await Promise.all(BACKENDS.map(([n, p]) => startBackend(n, p)));
  const l4lb = spawn(process.execPath, [join(ROOT, 'bin', 'l4lb'), 'run', '-c', join(ROOT, 'config', 'l4lb.yaml'), '--log-format', 'pretty'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stop = () => {
    l4lb.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  l4lb.on('exit', (code) => {
    for (const s of servers) s.close();
    process.exit(code ?? 0);
  });
  let shown = false;
  createInterface({ input: l4lb.stdout! }).on('line', (line) => {
    process.stdout.write(line + '\n');
    if (!shown && line.includes('listening')) {
      shown = true;
      void show();
    }
  });
}

async function show(): Promise<void> {
  const clients = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
  const lines: string[] = [];
  for (const c of clients) {
    const answers: string[] = [];
    for (let i = 0; i < 3; i++) answers.push(await ask(c));
    lines.push(`  client ${c} -> ${answers.join(', ')}`);
  }
  process.stdout.write(
    [
      '',
      `l4lb demo: 127.0.0.1:${FRONTEND_PORT} -> alpha 127.0.0.1:7001, bravo :7002, charlie :7003 (each answers with its name)`,
      'Three connections from each of four client addresses; each client sticks to one backend:',
      ...lines,
      '',
      'Try it yourself (each source address keeps its backend):',
      `  nc -s 127.0.0.2 127.0.0.1 ${FRONTEND_PORT}`,
      `  nc -s 127.0.0.3 127.0.0.1 ${FRONTEND_PORT}`,
      `  node bin/l4lb explain -c config/l4lb.yaml --client 127.0.0.2     # where and why`,
      `  node bin/l4lb explain -c config/l4lb.yaml --ring                 # each backend's share`,
      `  node bin/l4lb status -c config/l4lb.yaml                         # live state and counters`,
      '  status page: http://127.0.0.1:9100/   (curl 127.0.0.1:9100/persistence/demo for the table)',
      'Ctrl-C stops l4lb and the demo backends.',
      '',
    ].join('\n'),
  );
}

main().catch((err: Error) => {
  process.stderr.write(`demo: ${err.message}\n`);
  process.exit(1);
});
