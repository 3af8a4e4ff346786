/**
 * HAProxy in front of l4lb (SPEC §1 step 2): HAProxy `mode tcp` with
 * `send-proxy` (v1) and `send-proxy-v2` talks to l4lb (`accept_proxy:
 * required`, trusted 127.0.0.0/8). Two HAProxy instances dial l4lb from
 * different source addresses (127.0.0.11, 127.0.0.12); the same client
 * (127.0.0.50) through either of them, in either version, reaches the same
 * l4lb backend, and l4lb logs the client from the header.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import {
  findTool,
  request,
  requireTool,
  reservePort,
  runL4lb,
  spawnLogged,
  startNamedBackend,
  tmpDir,
  writeConfig,
} from '../helpers';
import { haproxyCommand, waitForFile } from './peer-process';

type Tap = Test;

interface HaproxyInstance {
  readonly source: string;
  /** Listening ports: the frontend that sends v1, and the one that sends v2. */
  readonly ports: { v1: number; v2: number };
}

/** One HAProxy in the foreground, its files in a temp dir, bound to loopback ports; killed in teardown. */
async function startHaproxy(t: Tap, l4lbPort: number, source: string): Promise<HaproxyInstance> {
  const dir = tmpDir(t);
  const stats = path.join(dir, 'admin.sock');
  const ports = { v1: await reservePort(), v2: await reservePort() };
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    `global
  stats socket ${stats} mode 600 level admin
  maxconn 256

defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s

frontend in_v1
  bind 127.0.0.1:${ports.v1}
  default_backend to_l4lb_v1

frontend in_v2
  bind 127.0.0.1:${ports.v2}
  default_backend to_l4lb_v2

backend to_l4lb_v1
  server l4lb 127.0.0.1:${l4lbPort} send-proxy source ${source}

backend to_l4lb_v2
  server l4lb 127.0.0.1:${l4lbPort} send-proxy-v2 source ${source}
`,
  );
  const proc = spawnLogged(t, findTool('haproxy')!, ['-db', '-f', cfg], { cwd: dir });
  // The stats socket is bound with the listeners; it answers once HAProxy runs its event loop.
  await waitForFile(stats, proc);
  for (let attempt = 0; ; attempt++) {
    try {
      const info = await haproxyCommand(stats, 'show info');
      t.match(info, /Name: HAProxy/, `HAProxy (source ${source}) is up`);
      break;
    } catch (err) {
      // the socket file appears just before listen(); retry on the next turn of the loop
      if (attempt >= 100 || (err as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw err;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return { source, ports };
}

t.test('HAProxy send-proxy and send-proxy-v2 in front of l4lb', async (t) => {
  if (!requireTool(t, 'haproxy')) return;
  const backends = [await startNamedBackend(t, 'a'), await startNamedBackend(t, 'b'), await startNamedBackend(t, 'c')];
  const file = writeConfig(t, {
    log: { level: 'info' },
    shutdown_grace: '1s',
    frontends: [
      {
        name: 'edge',
        listen: '127.0.0.1:0',
        accept_proxy: 'required',
        trusted_proxies: ['127.0.0.0/8'],
        timeouts: { handshake: '2s', connect: '1s' },
        backends: backends.map((b) => ({ name: b.name, address: b.address })),
      },
    ],
  });
  const l4lb = runL4lb(t, ['run', '-c', file]);
  const port = await l4lb.listening('edge');
  const proxies = [await startHaproxy(t, port, '127.0.0.11'), await startHaproxy(t, port, '127.0.0.12')];

  /** One request from `client` through `proxy` with `version`; checks l4lb's log line; returns the backend. */
  const via = async (t: Tap, proxy: HaproxyInstance, version: 'v1' | 'v2', client: string): Promise<string> => {
    const since = l4lb.mark();
    const name = await request(proxy.ports[version], client);
    const line = await l4lb.waitForMsg('connection closed', { client }, { since, timeoutMs: 5_000 });
    t.match(
      line,
      { frontend: 'edge', client, key: `ip:${client}`, key_source: 'proxy', backend: name },
      `${client} via HAProxy ${proxy.source} ${version}: l4lb logged the client from the header`,
    );
    return name;
  };

  await t.test('the same client through both HAProxy instances, v1 and v2: one backend', async (t) => {
    const names: string[] = [];
    for (const version of ['v1', 'v2'] as const) for (const p of proxies) names.push(await via(t, p, version, '127.0.0.50'));
    t.equal(new Set(names).size, 1, `always ${names[0]}: ${names.join(', ')}`);
  });

  await t.test('other clients: each keeps its backend through either instance, and they spread', async (t) => {
    const home = new Map<string, string>();
    for (let i = 51; i <= 58; i++) {
      const client = `127.0.0.${i}`;
      const version = i % 2 === 0 ? 'v1' : 'v2';
      const first = await via(t, proxies[i % 2]!, version, client);
      const second = await via(t, proxies[(i + 1) % 2]!, version === 'v1' ? 'v2' : 'v1', client);
      t.equal(second, first, `${client}: ${first} through HAProxy ${proxies[i % 2]!.source}, then through ${proxies[(i + 1) % 2]!.source}`);
      home.set(client, first);
    }
    const spread = new Set(home.values());
    t.ok(spread.size >= 2, `the key is the client, not the proxy: 8 clients on ${spread.size} backends`);
  });
});
