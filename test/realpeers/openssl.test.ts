/**
 * TLS passthrough with `affinity.key: sni` between real TLS peers (SPEC §1
 * step 3): two `openssl s_server` backends, told apart by their
 * certificate's CN, behind l4lb. `openssl s_client -servername` completes
 * the full handshake through l4lb (the peeked hello is replayed intact),
 * the same name always reaches the same backend, also from other client
 * addresses (node:tls clients with localAddress, checking the peer
 * certificate and a round trip of data).
 */
import * as path from 'node:path';
import * as tls from 'node:tls';
import t, { type Test } from 'tap';
import {
  connectFrom,
  findTool,
  requireTool,
  reservePort,
  runL4lb,
  runProcess,
  spawnLogged,
  tmpDir,
  withTimeout,
  writeConfig,
} from '../helpers';

type Tap = Test;

/** A self-signed certificate for `cn` in `dir`. */
async function makeCert(openssl: string, dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${cn}.pem`);
  const key = path.join(dir, `${cn}.key`);
  const r = await runProcess(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', key, '-out', cert, '-days', '1'], { cwd: dir });
  if (r.code !== 0) throw new Error(`openssl req failed (${r.code}): ${r.stderr}`);
  return { cert, key };
}

/** `openssl s_server -rev` (answers each line reversed; never reads its stdin) on a loopback port. */
async function startServer(t: Tap, openssl: string, dir: string, cn: string): Promise<number> {
  const { cert, key } = await makeCert(openssl, dir, cn);
  const port = await reservePort();
  const proc = spawnLogged(t, openssl, ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', cert, '-key', key, '-rev'], { cwd: dir });
  // s_server prints ACCEPT once it listens
  await proc.waitFor((l) => l.raw === 'ACCEPT', { timeoutMs: 10_000, what: `ACCEPT from s_server ${cn}` });
  return port;
}

/** `openssl s_client -brief` through l4lb: the CN it saw (stdin closed: it ends after the handshake). */
async function sClient(openssl: string, port: number, servername: string): Promise<string> {
  const r = await runProcess(openssl, ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-brief'], {
    input: '',
    timeoutMs: 15_000,
  });
  const out = r.stdout + r.stderr;
  if (r.code !== 0 || !out.includes('CONNECTION ESTABLISHED')) {
    throw new Error(`s_client -servername ${servername} failed (code ${r.code}):\n${out}`);
  }
  const m = /Peer certificate: CN\s*=\s*(\S+)/.exec(out);
  if (!m) throw new Error(`no peer certificate in the s_client output:\n${out}`);
  return m[1]!;
}

/** A node:tls client from `localAddress`: the peer's CN, and a line sent and answered reversed. */
async function nodeClient(port: number, localAddress: string, servername: string): Promise<{ cn: string; answer: string }> {
  const raw = await connectFrom(port, localAddress);
  const sock = tls.connect({ socket: raw, servername, rejectUnauthorized: false });
  try {
    return await withTimeout(
      new Promise<{ cn: string; answer: string }>((resolve, reject) => {
        sock.on('error', reject);
        sock.once('secureConnect', () => {
          const cn = String(sock.getPeerCertificate().subject?.CN ?? '');
          let buf = '';
          sock.setEncoding('utf8');
          sock.on('data', (c: string) => {
            buf += c;
            const nl = buf.indexOf('\n');
            if (nl >= 0) resolve({ cn, answer: buf.slice(0, nl) });
          });
          sock.write(`hello from ${localAddress}\n`);
        });
      }),
      10_000,
      `a TLS round trip from ${localAddress} for ${servername}`,
    );
  } finally {
    sock.destroy();
    raw.destroy();
  }
}

t.test('openssl s_server backends behind l4lb with affinity.key: sni', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const openssl = findTool('openssl')!;
  const dir = tmpDir(t);
  const ports = { one: await startServer(t, openssl, dir, 'one'), two: await startServer(t, openssl, dir, 'two') };
  const file = writeConfig(t, {
    log: { level: 'info' },
    shutdown_grace: '1s',
    frontends: [
      {
        name: 'tls',
        listen: '127.0.0.1:0',
        affinity: { key: 'sni', fallback: 'source_ip' },
        timeouts: { handshake: '2s', connect: '1s' },
        backends: [
          { name: 'one', address: `127.0.0.1:${ports.one}` },
          { name: 'two', address: `127.0.0.1:${ports.two}` },
        ],
      },
    ],
  });
  const l4lb = runL4lb(t, ['run', '-c', file]);
  const port = await l4lb.listening('tls');

  let home = '';
  await t.test('s_client completes the handshake through l4lb, always on the same backend', async (t) => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const since = l4lb.mark();
      seen.push(await sClient(openssl, port, 'db.example.com'));
      t.match(await l4lb.waitForMsg('connection closed', { key: 'sni:db.example.com' }, { since, timeoutMs: 5_000 }), {
        key_source: 'sni',
        backend: seen.at(-1),
      });
    }
    t.equal(new Set(seen).size, 1, `CN ${seen.join(', ')}`);
    home = seen[0]!;
    t.ok(['one', 'two'].includes(home), `the certificate is a backend's (${home})`);
  });

  await t.test('the same name from other client addresses (node:tls) reaches the same backend', async (t) => {
    for (let i = 70; i < 80; i++) {
      const from = `127.0.0.${i}`;
      const since = l4lb.mark();
      const r = await nodeClient(port, from, i % 2 ? 'DB.Example.com' : 'db.example.com');
      t.equal(r.cn, home, `${from}: CN ${r.cn}`);
      t.equal(r.answer, [...`hello from ${from}`].reverse().join(''), `${from}: data flows both ways`);
      t.match(await l4lb.waitForMsg('connection closed', { client: from }, { since, timeoutMs: 5_000 }), {
        key: 'sni:db.example.com',
        key_source: 'sni',
        backend: home,
      });
    }
  });

  await t.test('server names spread over both backends, each one sticking', async (t) => {
    const byName = new Map<string, string>();
    for (let i = 1; i <= 6; i++) {
      const name = `svc${i}.example.com`;
      const first = await sClient(openssl, port, name);
      const again = await nodeClient(port, `127.0.0.${80 + i}`, name);
      t.equal(again.cn, first, `${name}: ${first}, then ${again.cn} from 127.0.0.${80 + i}`);
      byName.set(name, first);
    }
    t.equal(new Set(byName.values()).size, 2, `6 names on both backends: ${JSON.stringify([...byName])}`);
  });
});
