/**
 * `affinity.key: sni` through a running l4lb (SPEC §1 step 3): the server
 * name from the ClientHello is the key, whatever the client address; the
 * hello is peeked and replayed to the backend byte for byte; nothing sent →
 * closed at `timeouts.handshake`; a partial hello or non-TLS bytes → the
 * fallback key, bytes replayed; and 1,000 garbage connections leave l4lb
 * serving, with its memory back near where it started.
 *
 * Backends are plain TCP servers that record what they receive, so the TLS
 * handshakes never complete: the tests only need the hello to arrive.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import t, { type Test } from 'tap';
import {
  connectFrom,
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

interface Conn {
  readonly backend: string;
  data(): Buffer;
  /** Resolves once at least `n` bytes are in. */
  atLeast(n: number): Promise<Buffer>;
  /** Resolves with everything received once the connection is closed. */
  readonly closed: Promise<Buffer>;
}

interface Pool {
  readonly backends: Backend[];
  /** Every connection accepted by any backend, in order. */
  readonly conns: Conn[];
  /** The next connection any backend accepts. */
  next(timeoutMs?: number): Promise<Conn>;
  total(): number;
}

/** Backends that record what they receive and say nothing; each ends its side when the client ends. */
async function recordingPool(t: TestLike, names: string[]): Promise<Pool> {
  const conns: Conn[] = [];
  const events = new EventEmitter();
  const backends: Backend[] = [];
  for (const name of names) {
    backends.push(
      await startBackend(t, name, (sock) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const data = (): Buffer => Buffer.concat(chunks);
        const grew = new EventEmitter();
        const closed = new Promise<Buffer>((resolve) => sock.once('close', () => resolve(data())));
        const conn: Conn = {
          backend: name,
          data,
          closed,
          atLeast: (n) =>
            withTimeout(
              new Promise<Buffer>((resolve) => {
                const check = (): void => {
                  if (size >= n) {
                    grew.off('data', check);
                    resolve(data());
                  }
                };
                grew.on('data', check);
                check();
              }),
              5_000,
              `${n} bytes at backend ${name} (has ${size})`,
            ),
        };
        sock.on('data', (c: Buffer) => {
          chunks.push(c);
          size += c.length;
          grew.emit('data');
        });
        sock.on('end', () => sock.end());
        conns.push(conn);
        events.emit('conn', conn);
      }),
    );
  }
  return {
    backends,
    conns,
    async next(timeoutMs = 5_000) {
      const [conn] = await waitForEvent(events, 'conn', timeoutMs, 'a backend connection');
      return conn as Conn;
    },
    total: () => conns.length,
  };
}

// ------------------------------------------------------------ clients

interface TlsClient {
  readonly raw: net.Socket;
  readonly tls: tls.TLSSocket;
  /** Every byte the TLS client has written to the wire. */
  sent(): Buffer;
  close(): void;
}

/**
 * A node:tls client from `localAddress`, over a Duplex that records the
 * bytes it writes to the TCP socket, so the test knows exactly what the
 * client sent.
 */
async function tlsClient(port: number, localAddress: string, servername?: string): Promise<TlsClient> {
  const raw = await connectFrom(port, localAddress);
  const sent: Buffer[] = [];
  const wire = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      sent.push(Buffer.from(chunk));
      raw.write(chunk, cb);
    },
    final(cb) {
      raw.end();
      cb();
    },
    read() {},
  });
  raw.on('data', (c: Buffer) => wire.push(c));
  raw.on('end', () => wire.push(null));
  raw.on('error', () => wire.destroy());
  const opts: tls.ConnectionOptions = { socket: wire, rejectUnauthorized: false };
  if (servername !== undefined) opts.servername = servername;
  const sock = tls.connect(opts);
  sock.on('error', () => undefined); // the backends never answer; we hang up ourselves
  return {
    raw,
    tls: sock,
    sent: () => Buffer.concat(sent),
    close() {
      sock.destroy();
      raw.destroy();
    },
  };
}

/** Length of the complete ClientHello records at the start of `buf`, or -1. */
function helloEnd(buf: Buffer): number {
  let off = 0;
  let have = 0;
  let want = -1;
  while (off + 5 <= buf.length) {
    const len = buf.readUInt16BE(off + 3);
    if (off + 5 + len > buf.length) return -1;
    if (want < 0 && len >= 4) want = 4 + buf.readUIntBE(off + 6, 3);
    have += len;
    off += 5 + len;
    if (want >= 0 && have >= want) return off;
  }
  return -1;
}

/** One TLS client through l4lb: which backend got it, and were the bytes replayed unchanged? */
async function sniRequest(t: Tap, pool: Pool, port: number, from: string, servername?: string): Promise<string> {
  const conn = pool.next();
  const c = await tlsClient(port, from, servername);
  try {
    const got = await conn;
    // the whole hello at the backend
    let data = await got.atLeast(5);
    while (helloEnd(data) < 0) data = await got.atLeast(data.length + 1);
    const sent = c.sent();
    t.ok(helloEnd(sent) === sent.length, `the client sent one complete ClientHello (${sent.length} bytes)`);
    t.ok(data.equals(sent), `${from} ${servername ?? '(no SNI)'}: backend ${got.backend} received exactly the bytes the client sent`);
    return got.backend;
  } finally {
    c.close();
  }
}

async function startL4lb(t: Tap, pool: Pool): Promise<{ l4lb: L4lbProcess; port: number; optPort: number }> {
  const file = writeConfig(t, {
    log: { level: 'info' },
    shutdown_grace: '1s',
    frontends: [
      {
        name: 'tls',
        listen: '127.0.0.1:0',
        affinity: { key: 'sni', fallback: 'source_ip' },
        timeouts: { handshake: '300ms', connect: '1s' },
        deny: ['127.0.0.66/32'],
        backends: pool.backends.map((b) => ({ name: b.name, address: b.address })),
      },
      {
        name: 'tls-opt',
        listen: '127.0.0.1:0',
        accept_proxy: 'optional',
        trusted_proxies: ['127.0.0.9/32'],
        affinity: { key: 'sni', fallback: 'source_ip' },
        timeouts: { handshake: '300ms', connect: '1s' },
        deny: ['127.0.0.66/32'],
        backends: pool.backends.map((b) => ({ name: b.name, address: b.address })),
      },
    ],
  });
  const l4lb = runL4lb(t, ['run', '-c', file]);
  const port = await l4lb.listening('tls');
  return { l4lb, port, optPort: await l4lb.listening('tls-opt') };
}

function vmRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

// ------------------------------------------------------------ tests

t.test('sni affinity', async (t) => {
  const pool = await recordingPool(t, ['one', 'two', 'three']);
  const { l4lb, port, optPort } = await startL4lb(t, pool);

  await t.test('one server name from many client addresses reaches one backend, hello replayed unchanged', async (t) => {
    const seen: string[] = [];
    for (let i = 20; i <= 30; i++) {
      const from = `127.0.0.${i}`;
      const since = l4lb.mark();
      // mixed case names the same key
      const name = ['db.example.com', 'DB.Example.com', 'db.EXAMPLE.com'][i % 3]!;
      seen.push(await sniRequest(t, pool, port, from, name));
      t.match(
        await l4lb.waitForMsg('connection closed', { client: from }, { since, timeoutMs: 5_000 }),
        { key: 'sni:db.example.com', key_source: 'sni', backend: seen.at(-1) },
        `${from}: logged with the sni key`,
      );
    }
    t.equal(new Set(seen).size, 1, `11 client addresses, one backend: ${seen.join(',')}`);

    // and different names do spread: the key is the name, not the address
    const spread = new Set<string>();
    for (let i = 1; i <= 8; i++) spread.add(await sniRequest(t, pool, port, '127.0.0.20', `svc${i}.example.com`));
    t.ok(spread.size >= 2, `8 names from one address reach ${spread.size} backends`);
  });

  await t.test('a TLS client without SNI is routed by the fallback key', async (t) => {
    const since = l4lb.mark();
    const backend = await sniRequest(t, pool, port, '127.0.0.33');
    t.match(await l4lb.waitForMsg('connection closed', { client: '127.0.0.33' }, { since, timeoutMs: 5_000 }), {
      key: 'ip:127.0.0.33',
      key_source: 'fallback',
      backend,
    });
  });

  await t.test('a client that sends nothing is closed at timeouts.handshake', async (t) => {
    const before = pool.total();
    const since = l4lb.mark();
    const sock = await connectFrom(port, '127.0.0.34');
    sock.on('error', () => undefined);
    const started = performance.now();
    await withTimeout(new Promise((resolve) => sock.once('close', resolve)), 5_000, 'l4lb to close the silent client');
    const waited = performance.now() - started;
    t.ok(waited >= 250 && waited < 3_000, `closed after the 300ms handshake timeout (${waited.toFixed(0)}ms)`);
    t.match(await l4lb.waitForMsg('connection refused', { client: '127.0.0.34' }, { since, timeoutMs: 5_000 }), {
      reason: 'handshake_timeout',
    });
    t.equal(pool.total(), before, 'no backend was dialled');
  });

  await t.test('a partial hello, then a stall: routed by the fallback key, its bytes replayed', async (t) => {
    const probe = await tlsClient(port, '127.0.0.35', 'db.example.com');
    const conn0 = await pool.next();
    const full = await conn0.atLeast(5);
    probe.close();
    const hello = full.subarray(0, Math.max(helloEnd(full), 5));
    const partial = hello.subarray(0, 40);

    const since = l4lb.mark();
    const next = pool.next();
    const sock = await connectFrom(port, '127.0.0.36');
    sock.write(partial);
    const started = performance.now();
    const conn = await next;
    t.ok(performance.now() - started >= 250, 'routed only when the handshake timeout ran out');
    await conn.atLeast(partial.length);
    sock.write('more bytes after the stall');
    await conn.atLeast(partial.length + 26);
    const closed = new Promise((resolve) => sock.once('close', resolve));
    sock.end();
    sock.resume();
    await withTimeout(closed, 5_000, 'the close');
    const got = await conn.closed;
    t.ok(got.equals(Buffer.concat([partial, Buffer.from('more bytes after the stall')])), 'the backend received the partial hello, then the rest, unchanged');
    t.match(await l4lb.waitForMsg('connection closed', { client: '127.0.0.36' }, { since, timeoutMs: 5_000 }), {
      key: 'ip:127.0.0.36',
      key_source: 'fallback',
      backend: conn.backend,
    });
  });

  await t.test('bytes that are not TLS: the fallback key at once, bytes replayed', async (t) => {
    const request = Buffer.from('GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n');
    const since = l4lb.mark();
    const next = pool.next();
    const sock = await connectFrom(port, '127.0.0.37');
    const started = performance.now();
    sock.write(request);
    const conn = await next;
    t.ok(performance.now() - started < 250, 'no wait for the handshake timeout');
    await conn.atLeast(request.length);
    const closed = new Promise((resolve) => sock.once('close', resolve));
    sock.end();
    sock.resume();
    await withTimeout(closed, 5_000, 'the close');
    t.ok((await conn.closed).equals(request), 'the backend received the request unchanged');
    t.match(await l4lb.waitForMsg('connection closed', { client: '127.0.0.37' }, { since, timeoutMs: 5_000 }), {
      key: 'ip:127.0.0.37',
      key_source: 'fallback',
      backend: conn.backend,
    });
  });

  await t.test('a ClientHello claiming more than 64 KiB: the fallback key at once, bytes replayed', async (t) => {
    const head = Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00]); // a 16 KiB record of a 128 KiB hello
    const bytes = Buffer.concat([head, Buffer.alloc(200, 0x41)]);
    const since = l4lb.mark();
    const next = pool.next();
    const sock = await connectFrom(port, '127.0.0.38');
    const started = performance.now();
    sock.write(bytes);
    const conn = await next;
    t.ok(performance.now() - started < 250, 'no wait for the rest of the hello or the handshake timeout');
    await conn.atLeast(bytes.length);
    const closed = new Promise((resolve) => sock.once('close', resolve));
    sock.end();
    sock.resume();
    await withTimeout(closed, 5_000, 'the close');
    t.ok((await conn.closed).equals(bytes), 'the backend received the bytes unchanged');
    t.match(await l4lb.waitForMsg('connection closed', { client: '127.0.0.38' }, { since, timeoutMs: 5_000 }), {
      key: 'ip:127.0.0.38',
      key_source: 'fallback',
      backend: conn.backend,
    });
  });

  await t.test('deny applies to the client address on an sni frontend', async (t) => {
    for (const [fe, p] of [['tls', port], ['tls-opt', optPort]] as const) {
      const before = pool.total();
      const since = l4lb.mark();
      const c = await tlsClient(p, '127.0.0.66', 'db.example.com');
      await withTimeout(new Promise((resolve) => (c.raw.destroyed ? resolve(null) : c.raw.once('close', resolve))), 5_000, 'the denied client to be closed');
      c.close();
      t.match(await l4lb.waitForMsg('connection refused', { frontend: fe, client: '127.0.0.66' }, { since, timeoutMs: 5_000 }), { reason: 'denied' }, fe);
      t.equal(pool.total(), before, `${fe}: no backend was dialled`);
    }
  });

  await t.test('accept_proxy optional on an sni frontend: untrusted peers', async (t) => {
    // a PROXY header from an untrusted peer closes the connection
    let since = l4lb.mark();
    const sock = await connectFrom(optPort, '127.0.0.2');
    sock.on('error', () => undefined);
    sock.write('PROXY TCP4 203.0.113.1 127.0.0.1 1000 443\r\n');
    await withTimeout(new Promise((resolve) => sock.once('close', resolve)), 5_000, 'the close');
    t.match(await l4lb.waitFor((l) => l.client === '127.0.0.2' && typeof l.reason === 'string', { since, timeoutMs: 5_000 }), { reason: 'untrusted_proxy' });

    // a TLS client is routed by its name
    since = l4lb.mark();
    const backend = await sniRequest(t, pool, optPort, '127.0.0.3', 'db.example.com');
    t.match(await l4lb.waitForMsg('connection closed', { client: '127.0.0.3' }, { since, timeoutMs: 5_000 }), { key: 'sni:db.example.com', key_source: 'sni', backend });

    // bytes that only start like a signature ("\r\n") are no PROXY header: fallback, replayed
    since = l4lb.mark();
    const next = pool.next();
    const plain = await connectFrom(optPort, '127.0.0.4');
    plain.write('\r\n');
    const conn = await next;
    await conn.atLeast(2);
    const closed = new Promise((resolve) => plain.once('close', resolve));
    plain.end();
    plain.resume();
    await withTimeout(closed, 5_000, 'the close');
    t.equal((await conn.closed).toString(), '\r\n', 'the backend received the bytes');
    t.match(await l4lb.waitForMsg('connection closed', { client: '127.0.0.4' }, { since, timeoutMs: 5_000 }), { key: 'ip:127.0.0.4', key_source: 'fallback' });
  });
});

t.test('1,000 garbage connections: l4lb keeps serving and its memory returns near its baseline', async (t) => {
  const pool = await recordingPool(t, ['one', 'two', 'three']);
  const { l4lb, port } = await startL4lb(t, pool);

  // warm up, then the baseline
  const home = await sniRequest(t, pool, port, '127.0.0.40', 'db.example.com');
  for (let i = 0; i < 20; i++) await sniRequest(t, pool, port, `127.0.0.${41 + i}`, `warm${i}.example.com`);
  const baseline = vmRssKiB(l4lb.pid);

  const probe = await tlsClient(port, '127.0.0.39', 'garbage.example.com');
  const helloConn = await pool.next();
  let hello = await helloConn.atLeast(5);
  while (helloEnd(hello) < 0) hello = await helloConn.atLeast(hello.length + 1);
  probe.close();
  hello = hello.subarray(0, helloEnd(hello));

  const rnd = (n: number): number => Math.floor(Math.random() * n);
  const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
  const kinds = ['random+end', 'random+reset', 'half-open', 'truncated+end', 'truncated+reset', 'mutated+end', 'connect+reset'] as const;
  const tally: Record<string, number> = {};

  const used = new Map<string, string>();
  const one = async (i: number): Promise<void> => {
    const kind = kinds[i % kinds.length]!;
    tally[kind] = (tally[kind] ?? 0) + 1;
    const from = `127.0.${1 + (i % 200)}.${1 + (i % 250)}`;
    used.set(from, kind);
    const sock = await connectFrom(port, from);
    sock.on('error', () => undefined);
    const closed = new Promise((resolve) => sock.once('close', resolve));
    sock.resume();
    let payload: Buffer | null = null;
    if (kind.startsWith('random')) payload = randomBytes(1 + rnd(3000));
    if (kind.startsWith('truncated')) payload = hello.subarray(0, 1 + rnd(hello.length - 1));
    if (kind.startsWith('mutated')) {
      payload = Buffer.from(hello);
      for (let k = 0; k < 8; k++) payload[rnd(payload.length)] = rnd(256);
    }
    if (payload) sock.write(payload);
    if (kind.endsWith('reset')) sock.resetAndDestroy();
    else sock.end();
    await withTimeout(closed, 10_000, `garbage connection ${i} (${kind}) to close`);
  };

  const since = l4lb.mark();
  const TOTAL = 1_000;
  const CONCURRENCY = 50;
  let nextIndex = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (nextIndex < TOTAL) await one(nextIndex++);
    }),
  );
  t.comment(`garbage: ${JSON.stringify(tally)} in ${(performance.now() - started).toFixed(0)}ms`);

  // One line per connection l4lb got to know. A reset that lands before l4lb's accept() leaves a
  // socket without a peer address, which l4lb drops without a line; so resets may be missing.
  const endedFrom = new Set([...used].filter(([, kind]) => !kind.endsWith('reset')).map(([a]) => a));
  const isLine = (l: LogLine): boolean => l.msg === 'connection closed' || l.msg === 'connection refused';
  let done = 0;
  await l4lb.waitFor((l) => isLine(l) && endedFrom.has(l.client as string) && ++done >= endedFrom.size, {
    since,
    timeoutMs: 20_000,
    what: `a line for each of the ${endedFrom.size} connections that ended normally`,
  });
  const perClient = new Map<string, number>();
  // A client that reset before it was accepted is logged with client null (its address is gone): not a duplicate.
  for (const l of l4lb.lines.slice(since).filter(isLine)) {
    if (l.client === null) continue;
    perClient.set(l.client as string, (perClient.get(l.client as string) ?? 0) + 1);
  }
  t.same([...endedFrom].filter((a) => perClient.get(a) !== 1), [], `each of the ${endedFrom.size} ended connections logged exactly one line`);
  t.same([...perClient].filter(([, n]) => n > 1), [], 'no connection logged twice');
  t.comment(`lines for reset connections: ${[...used].filter(([a, k]) => k.endsWith('reset') && perClient.has(a)).length} of ${used.size - endedFrom.size}`);

  // still serving, still persistent
  t.equal(await sniRequest(t, pool, port, '127.0.0.99', 'db.example.com'), home, 'a normal client reaches the same backend as before');
  const after = vmRssKiB(l4lb.pid);
  t.comment(`VmRSS baseline ${baseline} kB, after ${after} kB`);
  t.ok(after < baseline + 30 * 1024, `VmRSS ${after} kB < baseline ${baseline} kB + 30 MiB`);
});
