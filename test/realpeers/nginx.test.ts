/**
 * l4lb in front of nginx `stream` with `listen ... proxy_protocol` (SPEC §1
 * step 7): with `send_proxy: v1` and, separately, `v2`, nginx reads the
 * header l4lb writes and reports the real client (127.0.0.60) and its
 * source port, both in its answer and in its access log.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import t from 'tap';
import {
  connectFrom,
  findTool,
  readLine,
  requireTool,
  reservePort,
  runL4lb,
  spawnLogged,
  tmpDir,
  waitForEvent,
  writeConfig,
} from '../helpers';
import { waitForFile } from './peer-process';

const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

t.test('nginx stream with proxy_protocol behind l4lb send_proxy v1 and v2', async (t) => {
  if (!requireTool(t, 'nginx')) return;
  const dir = tmpDir(t);
  const nginxPort = await reservePort();
  const pidFile = path.join(dir, 'nginx.pid');
  const accessLog = path.join(dir, 'access.log');
  const conf = path.join(dir, 'nginx.conf');
  // the module is built in on some distributions and a dynamic module on others
  const loadModule = fs.existsSync(STREAM_MODULE) ? `load_module ${STREAM_MODULE};\n` : '';
  fs.writeFileSync(
    conf,
    `${loadModule}master_process off;
pid ${pidFile};
error_log stderr notice;
events { worker_connections 64; }
stream {
  log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr';
  server {
    listen 127.0.0.1:${nginxPort} proxy_protocol;
    access_log ${accessLog} pp;
    return "$proxy_protocol_addr:$proxy_protocol_port\\n";
  }
}
`,
  );
  // single process (master_process off), so the teardown's SIGKILL leaves nothing behind
  const nginx = spawnLogged(t, findTool('nginx')!, ['-g', 'daemon off;', '-c', conf, '-p', dir, '-e', 'stderr'], { cwd: dir });
  // nginx writes its pid file after binding its listeners
  await waitForFile(pidFile, nginx);

  const file = writeConfig(t, {
    log: { level: 'info' },
    shutdown_grace: '1s',
    frontends: [
      { name: 'pp-v1', listen: '127.0.0.1:0', send_proxy: 'v1', backends: [{ name: 'nginx', address: `127.0.0.1:${nginxPort}` }] },
      { name: 'pp-v2', listen: '127.0.0.1:0', send_proxy: 'v2', backends: [{ name: 'nginx', address: `127.0.0.1:${nginxPort}` }] },
      // the header set on the backend, the frontend says off
      { name: 'pp-be', listen: '127.0.0.1:0', send_proxy: 'off', backends: [{ name: 'nginx', address: `127.0.0.1:${nginxPort}`, send_proxy: 'v2' }] },
    ],
  });
  const l4lb = runL4lb(t, ['run', '-c', file]);

  for (const fe of ['pp-v1', 'pp-v2', 'pp-be']) {
    await t.test(`${fe}: nginx sees 127.0.0.60 and its port`, async (t) => {
      const port = await l4lb.listening(fe);
      const since = l4lb.mark();
      const sock: net.Socket = await connectFrom(port, '127.0.0.60');
      const clientPort = sock.localPort!;
      const answer = await readLine(sock);
      t.equal(answer, `127.0.0.60:${clientPort}`, 'the answer names the real client and its source port');
      sock.resume();
      if (!sock.destroyed) await waitForEvent(sock, 'close', 5_000, 'nginx to close after its answer');
      t.match(await l4lb.waitForMsg('connection closed', { frontend: fe, client: '127.0.0.60' }, { since, timeoutMs: 5_000 }), {
        backend: 'nginx',
        key: 'ip:127.0.0.60',
      });
      // nginx logs when the session ends; its line for this port shows l4lb as the peer
      const logged = await waitForLogLine(accessLog, `127.0.0.60 ${clientPort} `);
      t.equal(logged, `127.0.0.60 ${clientPort} 127.0.0.1`, 'access log: proxy_protocol_addr, proxy_protocol_port, remote_addr');
    });
  }
});

/** The first line of `file` starting with `prefix`, waiting (by watching the file) until it is written. */
function waitForLogLine(file: string, prefix: string, timeoutMs = 5_000): Promise<string> {
  const find = (): string | undefined =>
    fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(prefix)) : undefined;
  return new Promise((resolve, reject) => {
    const watcher = fs.watch(path.dirname(file), () => {
      const line = find();
      if (line !== undefined) finish(null, line);
    });
    const timer = setTimeout(() => finish(new Error(`no line starting ${JSON.stringify(prefix)} in ${file} after ${timeoutMs}ms`)), timeoutMs);
    const finish = (err: Error | null, line?: string): void => {
      watcher.close();
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(line!);
    };
    const line = find();
    if (line !== undefined) finish(null, line);
  });
}
