/**
 * parseClientHello (SPEC §9 `sni` and `alpn` routes): real ClientHellos from
 * node:tls with and without SNI and ALPN, delivered whole, cut at every byte
 * and re-framed into two records at every byte; a hello across several
 * records; too-large and not-tls; a reference encoder building random hellos
 * whose name and ALPN list must come back exactly; and 100k random, mutated,
 * truncated and extended inputs that must never throw. parseSni is a view of
 * the same parse, which the fuzz run checks too.
 */
import type * as tls from 'node:tls';
import t from 'tap';
import { MAX_HELLO, parseClientHello, type HelloResult } from '../../src/routing/hello';
import { parseSni } from '../../src/routing/sni';
import { rng } from '../util/random';
import { captureHello, frame, handshakeBytes } from '../util/tls-hello';

// ------------------------------------------------------------ a reference encoder (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1)

interface Ext {
  readonly type: number;
  readonly data: Buffer;
}

const u8 = (n: number): Buffer => Buffer.from([n]);
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
const vec8 = (body: Buffer): Buffer => Buffer.concat([u8(body.length), body]);
const vec16 = (body: Buffer): Buffer => Buffer.concat([u16(body.length), body]);

/** A server_name extension with these (type, name) entries; type 0 is host_name. */
function sniExt(entries: readonly { type: number; name: Buffer }[]): Ext {
  return { type: 0, data: vec16(Buffer.concat(entries.map((e) => Buffer.concat([u8(e.type), vec16(e.name)])))) };
}
const hostNameExt = (name: string): Ext => sniExt([{ type: 0, name: Buffer.from(name, 'latin1') }]);
const alpnExt = (names: readonly Buffer[]): Ext => ({ type: 16, data: vec16(Buffer.concat(names.map(vec8))) });
const alpnOf = (...names: string[]): Ext => alpnExt(names.map((n) => Buffer.from(n, 'latin1')));

/** A ClientHello handshake message (type, 24-bit length, body) carrying `exts` in order. */
function clientHello(exts: readonly Ext[], sessionId: Buffer = Buffer.alloc(32, 7)): Buffer {
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 0xab), // random
    vec8(sessionId),
    vec16(Buffer.from([0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f])), // cipher suites
    vec8(Buffer.from([0])), // compression: null
    vec16(Buffer.concat(exts.map((e) => Buffer.concat([u16(e.type), vec16(e.data)])))),
  ]);
  const head = Buffer.from([1, 0, 0, 0]);
  head.writeUIntBE(body.length, 1, 3);
  return Buffer.concat([head, body]);
}

/** `exts` plus padding (extension 21) first, so that the handshake message is exactly `total` bytes. */
function paddedTo(total: number, exts: readonly Ext[]): Buffer {
  const bare = clientHello([{ type: 21, data: Buffer.alloc(0) }, ...exts]);
  return clientHello([{ type: 21, data: Buffer.alloc(total - bare.length) }, ...exts]);
}

const hello = (name: string | null, alpn: readonly string[] = []): HelloResult => ({ kind: 'hello', name, alpn });
/** Real hellos carry the name as given; compare it case-blind as sni.test.ts does. */
const norm = (r: HelloResult): HelloResult => (r.kind === 'hello' && r.name !== null ? { ...r, name: r.name.toLowerCase() } : r);

// ------------------------------------------------------------ tests

t.test('real ClientHellos from node:tls give the name and the ALPN list', async (t) => {
  const cases: { opts: tls.ConnectionOptions; want: HelloResult }[] = [
    { opts: { servername: 'db.example.com', ALPNProtocols: ['h2', 'http/1.1'] }, want: hello('db.example.com', ['h2', 'http/1.1']) },
    { opts: { servername: 'DB.Example.com', ALPNProtocols: ['postgresql'] }, want: hello('db.example.com', ['postgresql']) },
    { opts: { servername: 'x.y', ALPNProtocols: ['http/1.1', 'h2'], maxVersion: 'TLSv1.2' }, want: hello('x.y', ['http/1.1', 'h2']) },
    { opts: { servername: 'cache-01.internal' }, want: hello('cache-01.internal') },
    { opts: { ALPNProtocols: ['h2'] }, want: hello(null, ['h2']) }, // no servername to an IP: no server_name extension
    { opts: {}, want: hello(null) },
  ];
  for (const { opts, want } of cases) {
    const records = await captureHello(t, opts);
    const what = `${JSON.stringify(opts)} (${records.length} bytes)`;
    t.same(norm(parseClientHello(records)), want, what);
    t.same(norm(parseClientHello(Buffer.concat([records, Buffer.from([0x14, 3, 3, 0, 1, 1])]))), want, `${what}, bytes after it`);
    t.same(norm(parseClientHello(frame(handshakeBytes(records), [7, 40]))), want, `${what}, across 3+ records`);
  }
});

t.test('a hello cut at every byte, and framed as two records at every byte', async (t) => {
  const records = await captureHello(t, { servername: 'DB.Example.com', ALPNProtocols: ['h2', 'http/1.1'] });
  const want = hello('db.example.com', ['h2', 'http/1.1']);
  const bad: string[] = [];
  for (let i = 0; i < records.length; i++) {
    const r = parseClientHello(records.subarray(0, i));
    if (r.kind !== 'need-more') bad.push(`prefix ${i}/${records.length}: ${JSON.stringify(r)}`);
  }
  t.same(bad, [], `each of ${records.length} proper prefixes needs more`);
  for (let i = 0; i <= records.length; i++) {
    const r = parseClientHello(Buffer.concat([records.subarray(0, i), records.subarray(i)]));
    if (JSON.stringify(norm(r)) !== JSON.stringify(want)) bad.push(`chunks split at ${i}: ${JSON.stringify(r)}`);
  }
  t.same(bad, [], 'two TCP chunks joined at every split point give the same answer');

  const hs = handshakeBytes(records);
  for (let i = 1; i < hs.length; i++) {
    const two = frame(hs, [i]);
    const r = parseClientHello(two);
    if (JSON.stringify(norm(r)) !== JSON.stringify(want)) bad.push(`records split at ${i}: ${JSON.stringify(r)}`);
    // every proper prefix of every 7th framing (the rest is the same work again)
    if (i % 7 === 1) {
      for (let k = 0; k < two.length; k++) {
        const p = parseClientHello(two.subarray(0, k));
        if (p.kind !== 'need-more') bad.push(`records split at ${i}, prefix ${k}: ${JSON.stringify(p)}`);
      }
    }
  }
  t.same(bad, [], `the handshake split into two records at each of ${hs.length - 1} points gives the same answer`);
});

t.test('a hello across several records, the header itself split', async (t) => {
  const hs = clientHello([hostNameExt('db.example.com'), alpnOf('h2', 'postgresql')]);
  const want = hello('db.example.com', ['h2', 'postgresql']);
  for (const sizes of [[1, 3], [2, 1, 1], [4], [hs.length - 1], Array<number>(hs.length).fill(1)]) {
    const recs = frame(hs, sizes);
    t.same(parseClientHello(recs), want, `fragments ${sizes.length > 8 ? 'all 1-byte' : sizes.join('+')}+rest`);
    t.equal(parseClientHello(recs.subarray(0, recs.length - 1)).kind, 'need-more', 'its last byte missing');
  }
  // a non-handshake record before the hello is complete: TLS, but nothing readable (parseSni's `none`)
  const cut = Buffer.concat([frame(hs.subarray(0, 20), []), Buffer.from([0x15, 3, 3, 0, 2, 2, 40])]);
  t.same(parseClientHello(cut), hello(null), 'an alert record interrupting the hello');
  t.same(parseSni(cut), { kind: 'none' }, 'parseSni agrees');
});

t.test('server_name and ALPN extension details', async (t) => {
  const cases: [string, Ext[], HelloResult][] = [
    ['both', [hostNameExt('a.b'), alpnOf('h2')], hello('a.b', ['h2'])],
    ['ALPN before server_name', [alpnOf('h2', 'h3'), { type: 43, data: Buffer.from([2, 3, 4]) }, hostNameExt('a.b')], hello('a.b', ['h2', 'h3'])],
    ['only the first ALPN extension', [alpnOf('h2'), alpnOf('h3')], hello(null, ['h2'])],
    ['only the first server_name extension', [hostNameExt('one.example'), hostNameExt('two.example')], hello('one.example')],
    ['an entry of another type before host_name', [sniExt([{ type: 7, name: Buffer.from('zz') }, { type: 0, name: Buffer.from('ok.example') }])], hello('ok.example')],
    ['a name with a space', [hostNameExt('bad name'), alpnOf('h2')], hello(null, ['h2'])],
    ['an empty name', [hostNameExt('')], hello(null)],
    ['255 bytes', [hostNameExt('a'.repeat(255))], hello('a'.repeat(255))],
    ['256 bytes', [hostNameExt('a'.repeat(256))], hello(null)],
    ['ALPN names are latin1', [alpnExt([Buffer.from([0xe9, 0x00, 0xff]), Buffer.from('x')])], hello(null, ['\u00e9\u0000\u00ff', 'x'])],
    ['a 255-byte ALPN name', [alpnOf('p'.repeat(255))], hello(null, ['p'.repeat(255)])],
    ['ALPN: an empty name makes the list malformed', [hostNameExt('a.b'), alpnExt([Buffer.from('h2'), Buffer.alloc(0)])], hello('a.b')],
    ['ALPN: list length short of the extension', [{ type: 16, data: Buffer.concat([u16(3), vec8(Buffer.from('h2')), Buffer.from([0])]) }], hello(null)],
    ['ALPN: list length past the extension', [{ type: 16, data: Buffer.concat([u16(9), vec8(Buffer.from('h2'))]) }], hello(null)],
    ['ALPN: a name past the list', [{ type: 16, data: Buffer.concat([u16(3), u8(5), Buffer.from('h2')]) }], hello(null)],
    ['ALPN: an empty list', [{ type: 16, data: u16(0) }], hello(null)],
    ['ALPN: one byte', [{ type: 16, data: Buffer.from([0]) }], hello(null)],
    ['no extensions', [], hello(null)],
  ];
  for (const [what, exts, want] of cases) t.same(parseClientHello(frame(clientHello(exts), [])), want, what);

  // an extension overrunning the extension block ends the walk; what came before stands
  const overrun = (first: Ext): Buffer => {
    const hs = clientHello([first, { type: 16, data: Buffer.alloc(0) }]);
    hs.writeUInt16BE(0xfff0, hs.length - 2); // the last extension's length
    return frame(hs, []);
  };
  t.same(parseClientHello(overrun(hostNameExt('a.b'))), hello('a.b'), 'server_name, then an overrunning extension');
  t.same(parseClientHello(overrun(alpnOf('h2'))), hello(null, ['h2']), 'ALPN, then an overrunning extension');
  // a body cut short inside its fixed fields
  const short = clientHello([hostNameExt('a.b')]).subarray(0, 4 + 20);
  short.writeUIntBE(20, 1, 3);
  t.same(parseClientHello(frame(short, [])), hello(null), 'a 20-byte body');
});

t.test('too-large and not-tls', async (t) => {
  const exts = [hostNameExt('big.example.com'), alpnOf('h2')];
  const atLimit = frame(paddedTo(MAX_HELLO, exts), []);
  t.same(parseClientHello(atLimit), hello('big.example.com', ['h2']), `a ${MAX_HELLO}-byte hello in ${Math.ceil(MAX_HELLO / 16384)} records`);
  t.equal(parseClientHello(atLimit.subarray(0, atLimit.length - 1)).kind, 'need-more', 'its last byte missing');
  const over = frame(paddedTo(MAX_HELLO + 1, exts), []);
  t.same(parseClientHello(over), { kind: 'too-large' }, 'one byte over the limit');
  t.same(parseClientHello(over.subarray(0, 9)), { kind: 'too-large' }, 'known from its first 9 bytes');
  t.same(parseClientHello(over.subarray(0, 8)), { kind: 'need-more' }, 'not from 8');

  const notTls: [string, Buffer][] = [
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n')],
    ['one byte', Buffer.from('G')],
    ['an SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')],
    ['record version 2', Buffer.from([0x16, 0x02, 0x00, 0x10, 0x00])],
    ['an application data record', Buffer.from([0x17, 0x03, 0x03, 0x00, 0x10, 1, 2])],
    ['a ServerHello', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0])],
    ['a ServerHello type in a partial record', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x50, 0x02, 0, 0, 1])],
    ['an empty record', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])],
    ['a record over 18 KiB', Buffer.from([0x16, 0x03, 0x01, 0x48, 0x01, 0x01])],
    ['an SSLv2-style hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])],
  ];
  for (const [what, buf] of notTls) t.same(parseClientHello(buf), { kind: 'not-tls' }, what);
  t.same(parseClientHello(Buffer.alloc(0)), { kind: 'need-more' }, 'nothing yet');
  t.same(parseClientHello(Buffer.from([0x16, 0x03])), { kind: 'need-more' }, 'a plausible record header start');
});

t.test('property: random hellos from the reference encoder come back exactly', async (t) => {
  const random = rng(0x4e110);
  const int = (n: number): number => Math.floor(random() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const NAME_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_';
  const failures: string[] = [];
  const RUNS = 20_000;
  let withName = 0;
  let withAlpn = 0;
  for (let run = 0; run < RUNS && failures.length < 5; run++) {
    const exts: Ext[] = [];
    // the name: absent, valid, or present but unusable
    let name: string | null = null;
    const nameKind = int(5);
    if (nameKind === 1 || nameKind === 2) {
      name = Array.from({ length: 1 + int(nameKind === 1 ? 40 : 255) }, () => NAME_CHARS[int(NAME_CHARS.length)]).join('');
      const entries: { type: number; name: Buffer }[] = [{ type: 0, name: Buffer.from(name, 'latin1') }];
      if (random() < 0.2) entries.unshift({ type: 1 + int(255), name: bytes(int(20)) });
      exts.push(sniExt(entries));
    } else if (nameKind === 3) {
      const bad = random() < 0.5 ? Buffer.from('a'.repeat(256 + int(40))) : Buffer.concat([Buffer.from('ok'), u8([0x20, 0x2f, 0x3a, 0x7f, 0xc3, 0][int(6)]!)]);
      exts.push(sniExt([{ type: 0, name: bad }]));
    }
    // the ALPN list: absent, or 1..6 names of 1..30 (sometimes 255) random bytes
    let alpn: string[] = [];
    if (random() < 0.7) {
      const names = Array.from({ length: 1 + int(6) }, () => bytes(random() < 0.05 ? 255 : 1 + int(30)));
      alpn = names.map((n) => n.toString('latin1'));
      exts.push(alpnExt(names));
    }
    // other extensions around them, in random order
    for (let k = int(6); k > 0; k--) exts.push({ type: [10, 11, 13, 23, 43, 45, 51, 0x0a0a, 0xfafa][int(9)]!, data: bytes(int(60)) });
    for (let i = exts.length - 1; i > 0; i--) {
      const j = int(i + 1);
      [exts[i], exts[j]] = [exts[j]!, exts[i]!];
    }
    const hs = clientHello(exts, bytes(int(33)));
    const sizes = random() < 0.5 ? [] : Array.from({ length: 1 + int(4) }, () => 1 + int(hs.length));
    const records = frame(hs, sizes);
    const want = hello(name, alpn);
    if (want.kind === 'hello' && want.name !== null) withName++;
    if (alpn.length > 0) withAlpn++;
    const got = parseClientHello(records);
    if (JSON.stringify(got) !== JSON.stringify(want)) failures.push(`run ${run}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}: ${records.toString('hex')}`);
    const early = parseClientHello(records.subarray(0, int(records.length)));
    if (early.kind !== 'need-more') failures.push(`run ${run}: a proper prefix gave ${JSON.stringify(early)}`);
  }
  t.same(failures, [], `${RUNS} random hellos (${withName} with a usable name, ${withAlpn} with ALPN)`);
});

t.test('fuzz: 100k random, mutated, truncated and extended inputs never throw and stay bounded', async (t) => {
  const random = rng(0xf022);
  const int = (n: number): number => Math.floor(random() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const seeds = [
    await captureHello(t, { servername: 'DB.Example.com', ALPNProtocols: ['h2', 'http/1.1'] }),
    await captureHello(t, { servername: 'x.y', ALPNProtocols: ['postgresql'], maxVersion: 'TLSv1.2' }),
    await captureHello(t, { ALPNProtocols: ['h2'] }),
    frame(clientHello([hostNameExt('a.b'), alpnOf('h2', 'x')]), [1, 3, 50]),
  ];
  const KINDS = new Set(['need-more', 'hello', 'not-tls', 'too-large']);
  const failures: string[] = [];
  const counts: Record<string, number> = {};
  const RUNS = 100_000;
  const started = performance.now();
  for (let i = 0; i < RUNS && failures.length < 10; i++) {
    let input: Buffer;
    const how = i % 5;
    if (how === 4) {
      // random bytes, half of them behind a plausible handshake record header
      input = bytes(int(120));
      if (random() < 0.5 && input.length >= 6) {
        input[0] = 0x16;
        input[1] = 3;
        input[5] = 1;
      }
    } else {
      const m = Buffer.from(seeds[i % seeds.length]!);
      if (how !== 2) {
        for (let k = 1 + int(6); k > 0; k--) m[int(m.length)] = random() < 0.2 ? 0xff : int(256); // flip; sometimes max out a length byte
      }
      if (how === 1) input = m.subarray(0, int(m.length + 1)); // truncate
      else if (how === 2) {
        const at = int(m.length + 1); // extend: insert random bytes somewhere
        input = Buffer.concat([m.subarray(0, at), bytes(1 + int(100)), m.subarray(at)]);
      } else input = m;
    }
    try {
      const r = parseClientHello(input);
      counts[r.kind] = (counts[r.kind] ?? 0) + 1;
      if (!KINDS.has(r.kind)) failures.push(`kind ${JSON.stringify(r)}`);
      if (r.kind === 'hello') {
        if (r.name !== null && !(r.name.length > 0 && r.name.length <= 255 && /^[A-Za-z0-9._-]+$/.test(r.name)))
          failures.push(`name ${JSON.stringify(r.name)} from ${input.toString('hex')}`);
        if (!Array.isArray(r.alpn) || r.alpn.length > input.length / 2 || r.alpn.some((p) => typeof p !== 'string' || p.length < 1 || p.length > 255))
          failures.push(`alpn ${JSON.stringify(r.alpn)} from ${input.toString('hex')}`);
      }
      // parseSni is the same parse seen through its older result type
      const s = parseSni(input);
      const expect = r.kind !== 'hello' ? r : r.name === null ? { kind: 'none' } : { kind: 'name', name: r.name };
      if (JSON.stringify(s) !== JSON.stringify(expect)) failures.push(`parseSni ${JSON.stringify(s)} vs ${JSON.stringify(r)} on ${input.toString('hex')}`);
    } catch (err) {
      failures.push(`threw ${(err as Error).message} on ${input.toString('hex')}`);
    }
  }
  const elapsed = performance.now() - started;
  t.same(failures, [], `${RUNS} inputs: ${JSON.stringify(counts)}`);
  t.ok((counts.hello ?? 0) > RUNS / 10 && (counts['need-more'] ?? 0) > RUNS / 20, 'the mutations reach every outcome');
  t.ok(elapsed < 5_000, `${RUNS} parses (twice) in ${elapsed.toFixed(0)}ms`);
});
