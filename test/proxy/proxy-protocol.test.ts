/**
 * PROXY protocol through a running l4lb (SPEC §1 steps 1, 2 and 7, §8):
 * `accept_proxy: required` and `optional` with `trusted_proxies`, the header
 * never forwarded as payload, headers in pieces, malformed or untrusted
 * headers refused with their reason, the handshake timeout; and
 * `send_proxy: v1|v2` (frontend-wide and per backend) seen by a backend that
 * parses the header, also after a failover.
 *
 * Clients play proxies and peers with loopback source addresses: 127.0.0.9
 * and 127.0.0.10 are trusted, 127.0.0.2 is not.
 */
import * as net from 'node:net';
import t, { type Test } from 'tap';
import { buildProxyHeader, parseProxyHeader, type ProxyParse } from '../../src/proxy/proxy-header';
import {
  connectFrom,
  readLine,
  refusingAddress,
  runL4lb,
  startBackend,
  waitForEvent,
  withTimeout,
  writeConfig,
  type Backend,
  type L4lbProcess,
  type LogLine,
  type TestLike,
} from '../helpers';

type Tap = Test;

// ------------------------------------------------------------ backends

interface Received {
  /** Everything received so far on this connection. */
  data(): Buffer;
  /** Resolves with everything received once the connection is closed. */
  readonly closed: Promise<Buffer>;
}

interface Recorder {
  readonly backend: Backend;
  readonly name: string;
  readonly address: string;
  /** One entry per accepted connection, in order. */
  readonly conns: Received[];
}

/**
 * A backend that records every byte it receives per connection and echoes
 * it. With `greet`, it first writes `${name}\n` (a server-speaks-first
 * protocol); with `proxyAware`, it answers only once a whole PROXY header
 * is in (parsed with our own parser), then greets and echoes what follows.
 */
async function recorder(t: TestLike, name: string, opts: { greet?: boolean; proxyAware?: boolean } = {}): Promise<Recorder> {
  const conns: Received[] = [];
  const backend = await startBackend(t, name, (sock) => {
    const chunks: Buffer[] = [];
    const data = (): Buffer => Buffer.concat(chunks);
    const closed = new Promise<Buffer>((resolve) => sock.once('close', () => resolve(data())));
    conns.push({ data, closed });
    let headerDone = !opts.proxyAware;
    if (opts.greet && headerDone) sock.write(`${name}\n`);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (headerDone) {
        sock.write(c);
        return;
      }
      const all = data();
      const r = parseProxyHeader(all);
      if (r.kind === 'need-more') return;
      headerDone = true;
      if (r.kind !== 'header') {
        sock.end(`bad header: ${JSON.stringify(r)}\n`);
        return;
      }
      sock.write(`${name}\n`);
      if (all.length > r.length) sock.write(all.subarray(r.length));
    });
    sock.on('end', () => sock.end());
  });
  return { backend, name, address: backend.address, conns };
}

function byName(recs: readonly Recorder[], name: string): Recorder {
  const r = recs.find((x) => x.name === name);
  if (!r) throw new Error(`no backend named ${JSON.stringify(name)}`);
  return r;
}

// ------------------------------------------------------------ clients

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const written = (sock: net.Socket, b: Buffer | string): Promise<void> =>
  new Promise((resolve, reject) => sock.write(b, (err) => (err ? reject(err) : resolve())));

/** Waits until `sock` is closed by the other side; resolves with what it read meanwhile. */
async function closedByPeer(sock: net.Socket, timeoutMs = 5_000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  sock.on('error', () => undefined); // a reset is a close too
  // 'close', not events.once: that would reject on the 'error' of a reset
  if (!sock.destroyed) await withTimeout(new Promise((resolve) => sock.once('close', resolve)), timeoutMs, 'l4lb to close the connection');
  return Buffer.concat(chunks);
}

/** Ends our side and waits for the connection to close. */
async function finish(sock: net.Socket): Promise<void> {
  const closed = waitForEvent(sock, 'close', 5_000, 'the connection to close after our end');
  sock.end();
  sock.resume();
  await closed;
}

interface Exchange {
  /** The greeting: the backend's name. */
  name: string;
  /** What came back for our payload (echoed). */
  echo: string;
}

/** Connect from `from`, write `prefix` (a PROXY header or nothing) and a payload line, read greeting and echo, end. */
async function exchange(port: number, from: string, prefix: Buffer | null, payload = 'hello through l4lb\n'): Promise<Exchange> {
  const sock = await connectFrom(port, from);
  try {
    sock.setNoDelay(true);
    if (prefix) sock.write(prefix);
    sock.write(payload);
    const name = await readLine(sock);
    const echo = await readLine(sock);
    await finish(sock);
    return { name, echo: echo + '\n' };
  } finally {
    sock.destroy();
  }
}

const v1 = (src: string, srcPort: number, dst = '192.0.2.1', dstPort = 5432): Buffer =>
  buildProxyHeader('v1', { address: src, port: srcPort }, { address: dst, port: dstPort });
const v2 = (src: string, srcPort: number, dst = '192.0.2.1', dstPort = 5432): Buffer =>
  buildProxyHeader('v2', { address: src, port: srcPort }, { address: dst, port: dstPort });

// ------------------------------------------------------------ l4lb

async function startL4lb(t: Tap, frontends: unknown[]): Promise<{ l4lb: L4lbProcess; ports: Record<string, number> }> {
  const file = writeConfig(t, { log: { level: 'info' }, shutdown_grace: '1s', frontends });
  const l4lb = runL4lb(t, ['run', '-c', file]);
  const ports: Record<string, number> = {};
  for (const fe of frontends as { name: string }[]) ports[fe.name] = await l4lb.listening(fe.name);
  return { l4lb, ports };
}

function closedLine(l4lb: L4lbProcess, fields: Record<string, unknown>, since: number): Promise<LogLine> {
  return l4lb.waitForMsg('connection closed', fields, { since, timeoutMs: 5_000 });
}

function refusedLine(l4lb: L4lbProcess, fields: Record<string, unknown>, since: number): Promise<LogLine> {
  return l4lb.waitForMsg('connection refused', fields, { since, timeoutMs: 5_000 });
}

/** No backend got a connection since `before` (counts per backend). */
function noNewConnections(t: Tap, recs: readonly Recorder[], before: number[], why: string): void {
  t.same(
    recs.map((r) => r.backend.connections),
    before,
    `${why}: no backend was connected`,
  );
}

const counts = (recs: readonly Recorder[]): number[] => recs.map((r) => r.backend.connections);

// ============================================================ accept_proxy: required

t.test('accept_proxy: required', async (t) => {
  const recs = [await recorder(t, 'a', { greet: true }), await recorder(t, 'b', { greet: true }), await recorder(t, 'c', { greet: true })];
  const { l4lb, ports } = await startL4lb(t, [
    {
      name: 'req',
      listen: '127.0.0.1:0',
      accept_proxy: 'required',
      trusted_proxies: ['127.0.0.9/32', '127.0.0.10/32'],
      timeouts: { handshake: '300ms', connect: '1s' },
      backends: recs.map((r) => ({ name: r.name, address: r.address })),
    },
  ]);
  const port = ports.req!;

  await t.test('a header from a trusted proxy: the client is the header source; the backend sees the payload only', async (t) => {
    for (const [build, version] of [[v1, 'v1'], [v2, 'v2']] as const) {
      const since = l4lb.mark();
      const client = version === 'v1' ? '203.0.113.7' : '203.0.113.8';
      const payload = `payload over ${version}\n`;
      const x = await exchange(port, '127.0.0.9', build(client, 40001), payload);
      t.equal(x.echo, payload, `${version}: the echo is the payload`);
      const rec = byName(recs, x.name);
      const got = await withTimeout(rec.conns.at(-1)!.closed, 5_000, 'the backend connection to close');
      t.equal(got.toString('latin1'), payload, `${version}: the backend received exactly the payload, no header bytes`);
      const line = await closedLine(l4lb, { client }, since);
      t.match(line, { frontend: 'req', client, key: `ip:${client}`, key_source: 'proxy', backend: x.name, reason: 'client_closed' }, `${version}: logged`);
      t.equal(line.bytes_in, Buffer.byteLength(payload), `${version}: bytes_in counts the payload only`);
    }
  });

  await t.test('the same client through two trusted proxies reaches the same backend', async (t) => {
    const seen = new Map<string, string>();
    for (let i = 1; i <= 8; i++) {
      const client = `198.51.100.${i}`;
      const proxies = i % 2 === 0 ? ['127.0.0.9', '127.0.0.10'] : ['127.0.0.10', '127.0.0.9'];
      const names: string[] = [];
      for (const proxy of proxies) {
        const since = l4lb.mark();
        names.push((await exchange(port, proxy, (i % 3 === 0 ? v2 : v1)(client, 50000 + i))).name);
        t.match(await closedLine(l4lb, { client }, since), { key: `ip:${client}`, key_source: 'proxy' });
      }
      t.equal(names[0], names[1], `${client} via ${proxies.join(' then ')}: ${names.join(', ')}`);
      seen.set(client, names[0]!);
    }
    // the key is the carried client, not the proxy: different clients spread over the backends
    t.ok(new Set(seen.values()).size >= 2, `8 clients reach ${new Set(seen.values()).size} backends: ${JSON.stringify([...seen])}`);
  });

  await t.test('an untrusted peer is refused at once, even with a valid header', async (t) => {
    const before = counts(recs);
    const since = l4lb.mark();
    const sock = await connectFrom(port, '127.0.0.2');
    sock.on('error', () => undefined);
    sock.write(v1('203.0.113.99', 1234));
    const got = await closedByPeer(sock);
    t.equal(got.length, 0, 'nothing came back');
    t.match(await refusedLine(l4lb, { client: '127.0.0.2' }, since), { frontend: 'req', reason: 'untrusted_proxy' });
    noNewConnections(t, recs, before, 'untrusted');
  });

  await t.test('a trusted peer without a header is refused', async (t) => {
    const before = counts(recs);
    let since = l4lb.mark();
    // speaks its protocol at once: not a PROXY header
    const sock = await connectFrom(port, '127.0.0.9');
    sock.write('GET / HTTP/1.0\r\n\r\n');
    await closedByPeer(sock);
    t.match(await refusedLine(l4lb, { client: '127.0.0.9' }, since), { reason: 'bad_proxy_header' });

    // says nothing: refused when timeouts.handshake (300ms) runs out
    since = l4lb.mark();
    const quiet = await connectFrom(port, '127.0.0.10');
    const started = performance.now();
    await closedByPeer(quiet);
    const waited = performance.now() - started;
    t.match(await refusedLine(l4lb, { client: '127.0.0.10' }, since), { reason: 'handshake_timeout' });
    t.ok(waited >= 250 && waited < 3_000, `closed after the 300ms handshake timeout (${waited.toFixed(0)}ms)`);
    noNewConnections(t, recs, before, 'no header');
  });

  await t.test('a header arriving one byte at a time works', async (t) => {
    for (const [build, version] of [[v1, 'v1'], [v2, 'v2']] as const) {
      const client = version === 'v1' ? '203.0.113.50' : '2001:db8::50';
      const since = l4lb.mark();
      const sock = await connectFrom(port, '127.0.0.9');
      sock.setNoDelay(true);
      for (const byte of build(client, 6000)) {
        await written(sock, Buffer.of(byte));
        await nextTick();
      }
      sock.write('after the slow header\n');
      const name = await readLine(sock);
      t.equal(await readLine(sock), 'after the slow header', `${version}: the payload is echoed`);
      await finish(sock);
      const line = await closedLine(l4lb, { client }, since);
      t.match(line, { backend: name, key_source: 'proxy', key: `ip:${client}` }, `${version}: the client is the header's source`);
      const got = await byName(recs, name).conns.at(-1)!.closed;
      t.equal(got.toString(), 'after the slow header\n', `${version}: the backend received the payload only`);
    }
  });

  await t.test('a malformed header is refused, and the next client is served', async (t) => {
    const malformed: [string, Buffer][] = [
      ['port 99999', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\nhello\n')],
      ['bad address', Buffer.from('PROXY TCP4 1.2.3.400 5.6.7.8 1 80\r\nhello\n')],
      ['no CRLF in 107 bytes', Buffer.from('PROXY TCP4 ' + '1'.repeat(120))],
      ['v2 version 1', Buffer.concat([v2('1.2.3.4', 1).subarray(0, 12), Buffer.from([0x11]), v2('1.2.3.4', 1).subarray(13)])],
    ];
    for (const [why, bytes] of malformed) {
      const before = counts(recs);
      const since = l4lb.mark();
      const sock = await connectFrom(port, '127.0.0.9');
      sock.on('error', () => undefined);
      sock.write(bytes);
      await closedByPeer(sock);
      t.match(await refusedLine(l4lb, { client: '127.0.0.9' }, since), { reason: 'bad_proxy_header' }, why);
      noNewConnections(t, recs, before, why);
      const x = await exchange(port, '127.0.0.9', v1('203.0.113.77', 7777), 'still fine\n');
      t.equal(x.echo, 'still fine\n', `${why}: a normal client right after is served`);
    }
  });
});

// ============================================================ accept_proxy: optional

t.test('accept_proxy: optional', async (t) => {
  const recs = [await recorder(t, 'a', { greet: true }), await recorder(t, 'b', { greet: true }), await recorder(t, 'c', { greet: true })];
  const { l4lb, ports } = await startL4lb(t, [
    {
      name: 'opt',
      listen: '127.0.0.1:0',
      accept_proxy: 'optional',
      trusted_proxies: ['127.0.0.9/32'],
      timeouts: { handshake: '300ms', connect: '1s' },
      backends: recs.map((r) => ({ name: r.name, address: r.address })),
    },
  ]);
  const port = ports.opt!;

  await t.test('a trusted peer without a header, speaking first: served with the socket address', async (t) => {
    const since = l4lb.mark();
    const started = performance.now();
    const x = await exchange(port, '127.0.0.9', null, 'client speaks first\n');
    t.equal(x.echo, 'client speaks first\n');
    t.ok(performance.now() - started < 250, 'no wait for the handshake timeout: the first bytes decided it');
    t.match(await closedLine(l4lb, { client: '127.0.0.9' }, since), { key: 'ip:127.0.0.9', key_source: 'socket' });
    t.equal((await byName(recs, x.name).conns.at(-1)!.closed).toString(), 'client speaks first\n');
  });

  await t.test('a trusted peer with a header: the header source is the client', async (t) => {
    const since = l4lb.mark();
    const x = await exchange(port, '127.0.0.9', v2('203.0.113.60', 6060), 'with header\n');
    t.equal(x.echo, 'with header\n');
    t.match(await closedLine(l4lb, { client: '203.0.113.60' }, since), { key_source: 'proxy' });
    t.equal((await byName(recs, x.name).conns.at(-1)!.closed).toString(), 'with header\n');
  });

  await t.test('a trusted peer that sends nothing gets the greeting after timeouts.handshake', async (t) => {
    const since = l4lb.mark();
    const sock = await connectFrom(port, '127.0.0.9');
    const started = performance.now();
    const name = await readLine(sock);
    const waited = performance.now() - started;
    t.ok(['a', 'b', 'c'].includes(name), `greeted by ${name}`);
    t.ok(waited >= 250 && waited < 3_000, `after the 300ms handshake wait (${waited.toFixed(0)}ms)`);
    sock.write('then talks\n');
    t.equal(await readLine(sock), 'then talks');
    await finish(sock);
    t.match(await closedLine(l4lb, { client: '127.0.0.9' }, since), { key_source: 'socket', backend: name });
  });

  await t.test('a trusted peer whose first bytes are only the start of a signature is served without a header', async (t) => {
    // "\r\n" is a prefix of the v2 signature, but no signature: after the handshake wait it is payload
    const since = l4lb.mark();
    const sock = await connectFrom(port, '127.0.0.9');
    const started = performance.now();
    await written(sock, '\r\n');
    const name = await readLine(sock);
    t.ok(performance.now() - started >= 250, 'served once the 300ms handshake wait ran out');
    t.equal(await readLine(sock), '\r', 'the early bytes reached the backend and came back');
    await finish(sock);
    t.equal((await byName(recs, name).conns.at(-1)!.closed).toString(), '\r\n', 'the backend received them as payload');
    t.match(await closedLine(l4lb, { client: '127.0.0.9' }, since), { key_source: 'socket', backend: name });
  });

  await t.test('an untrusted peer whose first bytes are a PROXY header is closed: untrusted_proxy', async (t) => {
    for (const [why, header] of [
      ['v1', v1('203.0.113.66', 1)],
      ['v2', v2('203.0.113.66', 1)],
    ] as const) {
      const since = l4lb.mark();
      const firstNew = recs.map((r) => r.conns.length);
      const sock = await connectFrom(port, '127.0.0.2');
      sock.on('error', () => undefined);
      sock.write(Buffer.concat([header, Buffer.from('payload\n')]));
      await closedByPeer(sock);
      const line = await l4lb.waitFor(
        (l) => (l.msg === 'connection closed' || l.msg === 'connection refused') && l.client === '127.0.0.2',
        { since, timeoutMs: 5_000, what: 'the close of 127.0.0.2' },
      );
      t.equal(line.reason, 'untrusted_proxy', `${why}: reason`);
      // a backend may have been dialled already, but it must not have seen the header
      for (const [i, r] of recs.entries()) {
        for (const c of r.conns.slice(firstNew[i])) {
          const got = await withTimeout(c.closed, 5_000, 'the backend side to close');
          t.equal(got.length, 0, `${why}: backend ${r.name} received nothing`);
        }
      }
    }
  });

  await t.test('an untrusted peer with ordinary bytes is served, not waited for', async (t) => {
    const since = l4lb.mark();
    const x = await exchange(port, '127.0.0.2', null, 'PING\r\n');
    t.equal(x.echo, 'PING\r\n');
    t.match(await closedLine(l4lb, { client: '127.0.0.2' }, since), { key: 'ip:127.0.0.2', key_source: 'socket' });
  });

  await t.test('an untrusted peer whose first segment is only a prefix of a signature is served', async (t) => {
    // "\r\n" (an empty line, the start of the v2 signature) and "P" (the start of "PROXY "):
    // neither carries a PROXY signature, so neither may be refused
    for (const first of ['\r\n', 'P']) {
      const since = l4lb.mark();
      const sock = await connectFrom(port, '127.0.0.2');
      sock.setNoDelay(true);
      sock.on('error', () => undefined);
      await written(sock, first);
      // the greeting comes once l4lb has dialled; our next bytes go out only after it, as a later segment
      const name = await readLine(sock);
      sock.write('ING\r\n');
      const echoed = first === 'P' ? await readLine(sock) : (await readLine(sock)) + '\n' + (await readLine(sock));
      t.equal(echoed, first === 'P' ? 'PING\r' : '\r\nING\r', `${JSON.stringify(first)} first: everything echoed by ${name}`);
      await finish(sock);
      t.match(await closedLine(l4lb, { client: '127.0.0.2' }, since), { key_source: 'socket', backend: name });
    }
  });

  await t.test('an untrusted peer that half-closes without sending: the end reaches the backend', async (t) => {
    for (const sent of ['', '\r\n']) {
      const since = l4lb.mark();
      const sock = await connectFrom(port, '127.0.0.2');
      sock.on('error', () => undefined);
      if (sent) await written(sock, sent);
      const name = await readLine(sock); // the backend is attached
      const closed = closedByPeer(sock);
      sock.end(); // our half-close must be relayed; the backend then ends its side
      const rest = await closed;
      t.equal(rest.toString(), sent, `${JSON.stringify(sent)}: echoed, then closed`);
      t.equal((await byName(recs, name).conns.at(-1)!.closed).toString(), sent, 'the backend got exactly what was sent');
      t.match(await closedLine(l4lb, { client: '127.0.0.2' }, since), { backend: name, reason: 'client_closed' });
    }
  });
});

// ============================================================ send_proxy

interface SeenHeader {
  header: ProxyParse;
  payload: string;
}

/** What a proxy-aware backend received on its latest connection, once closed. */
async function seenBy(rec: Recorder): Promise<SeenHeader> {
  const got = await withTimeout(rec.conns.at(-1)!.closed, 5_000, `backend ${rec.name} to close`);
  const header = parseProxyHeader(got);
  return { header, payload: header.kind === 'header' ? got.subarray(header.length).toString('latin1') : got.toString('latin1') };
}

t.test('send_proxy: the backend sees the real client and the frontend address before any payload', async (t) => {
  const names = ['fe-v1', 'fe-v2', 'over-v2', 'over-v1', 'fail-v1', 'fail-v2', 'relay'];
  const recs: Record<string, Recorder> = {};
  for (const n of names) recs[n] = await recorder(t, n, { proxyAware: true });
  const dead1 = await refusingAddress();
  const dead2 = await refusingAddress();
  const fe = (name: string, extra: Record<string, unknown>, backends: unknown[]) => ({
    name,
    listen: '127.0.0.1:0',
    timeouts: { connect: '1s', handshake: '1s' },
    backends,
    ...extra,
  });
  const { l4lb, ports } = await startL4lb(t, [
    fe('fe-v1', { send_proxy: 'v1' }, [{ name: 'x', address: recs['fe-v1']!.address }]),
    fe('fe-v2', { send_proxy: 'v2' }, [{ name: 'x', address: recs['fe-v2']!.address }]),
    fe('over-v2', { send_proxy: 'v1' }, [{ name: 'x', address: recs['over-v2']!.address, send_proxy: 'v2' }]),
    fe('over-v1', { send_proxy: 'off' }, [{ name: 'x', address: recs['over-v1']!.address, send_proxy: 'v1' }]),
    // the only primary refuses: every connection fails over to the backup
    fe('fail-v1', { send_proxy: 'v1', retries: 2 }, [
      { name: 'dead', address: dead1 },
      { name: 'live', address: recs['fail-v1']!.address, backup: true },
    ]),
    fe('fail-v2', { retries: 2 }, [
      { name: 'dead', address: dead2 },
      { name: 'live', address: recs['fail-v2']!.address, backup: true, send_proxy: 'v2' },
    ]),
    // a PROXY header in and one out: the inbound header's client and destination are passed on
    fe('relay', { send_proxy: 'v2', accept_proxy: 'required', trusted_proxies: ['127.0.0.9/32'] }, [
      { name: 'x', address: recs.relay!.address },
    ]),
  ]);

  const cases: [string, 1 | 2][] = [
    ['fe-v1', 1],
    ['fe-v2', 2],
    ['over-v2', 2],
    ['over-v1', 1],
    ['fail-v1', 1],
    ['fail-v2', 2],
  ];
  for (const [name, version] of cases) {
    await t.test(`${name}: a v${version} header`, async (t) => {
      const port = ports[name]!;
      for (let round = 0; round < 2; round++) {
        const since = l4lb.mark();
        const sock = await connectFrom(port, '127.0.0.60');
        const clientPort = sock.localPort!;
        const payload = `round ${round} payload\r\n`;
        sock.write(payload);
        t.equal(await readLine(sock), name, 'the backend answered after a valid header');
        t.equal(await readLine(sock), payload.slice(0, -1), 'the payload is echoed');
        await finish(sock);
        const seen = await seenBy(recs[name]!);
        t.same(
          seen.header,
          {
            kind: 'header',
            version,
            length: (seen.header as { length: number }).length,
            source: { address: '127.0.0.60', port: clientPort },
            destination: { address: '127.0.0.1', port },
          },
          `round ${round}: the client 127.0.0.60:${clientPort} and the frontend 127.0.0.1:${port}`,
        );
        t.equal(seen.payload, payload, `round ${round}: the payload follows the header, unchanged`);
        const line = await closedLine(l4lb, { frontend: name, client: '127.0.0.60' }, since);
        t.equal(line.bytes_in, Buffer.byteLength(payload), 'bytes_in counts the client\'s bytes, not the header l4lb wrote');
        if (name.startsWith('fail')) t.equal(line.backend, 'live', 'failed over to the live backend');
      }
    });
  }

  await t.test('relay: the inbound header is passed on (client and destination)', async (t) => {
    const since = l4lb.mark();
    const sock = await connectFrom(ports.relay!, '127.0.0.9');
    sock.write(v1('203.0.113.70', 44444, '198.51.100.200', 3306));
    sock.write('relayed\n');
    t.equal(await readLine(sock), 'relay');
    t.equal(await readLine(sock), 'relayed');
    await finish(sock);
    const seen = await seenBy(recs.relay!);
    t.match(seen.header, {
      kind: 'header',
      version: 2,
      source: { address: '203.0.113.70', port: 44444 },
      destination: { address: '198.51.100.200', port: 3306 },
    });
    t.equal(seen.payload, 'relayed\n');
    t.match(await closedLine(l4lb, { client: '203.0.113.70' }, since), { key_source: 'proxy' });
  });
});
