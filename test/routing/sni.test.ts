/**
 * parseSni (SPEC §1 step 3, `affinity.key: sni`): real ClientHellos captured
 * from node:tls against a local net.Server, delivered whole, split at every
 * byte boundary, and re-framed across several TLS records; no SNI, not TLS,
 * a hello over MAX_HELLO (and exactly at it); and random / truncated /
 * mutated hellos, which must never throw and stay fast.
 */
import t from 'tap';
import { MAX_HELLO, parseSni, type SniResult } from '../../src/routing/sni';
import { captureHello, frame, handshakeBytes } from '../util/tls-hello';

/** Re-frame the handshake bytes of `records` into records of the given fragment sizes. */
function reframe(records: Buffer, sizes: number[]): Buffer {
  return frame(handshakeBytes(records), sizes);
}

/** A ClientHello whose handshake message is exactly `total` bytes, by padding (extension 21) put before the SNI. */
function paddedHello(records: Buffer, total: number): Buffer {
  const hs = handshakeBytes(records);
  const body = hs.subarray(4);
  let p = 34; // legacy_version, random
  p += 1 + body[p]!; // session id
  p += 2 + body.readUInt16BE(p); // cipher suites
  p += 1 + body[p]!; // compression methods
  const extLen = body.readUInt16BE(p);
  const exts = body.subarray(p + 2, p + 2 + extLen);
  const padLen = total - hs.length - 4;
  if (padLen < 0) throw new Error(`hello already ${hs.length} bytes`);
  const pad = Buffer.alloc(4 + padLen);
  pad.writeUInt16BE(21, 0);
  pad.writeUInt16BE(padLen, 2);
  const newExts = Buffer.concat([pad, exts]);
  const extHead = Buffer.alloc(2);
  extHead.writeUInt16BE(newExts.length);
  const newBody = Buffer.concat([body.subarray(0, p), extHead, newExts]);
  const hsHead = Buffer.alloc(4);
  hsHead[0] = 1;
  hsHead.writeUIntBE(newBody.length, 1, 3);
  const newHs = Buffer.concat([hsHead, newBody]);
  if (newHs.length !== total) throw new Error(`padded to ${newHs.length}, wanted ${total}`);
  return frame(newHs, []);
}

const norm = (r: SniResult): SniResult => (r.kind === 'name' ? { kind: 'name', name: r.name.toLowerCase() } : r);

// ------------------------------------------------------------ tests

t.test('real ClientHellos from node:tls give the server name', async (t) => {
  for (const servername of ['DB.Example.com', 'cache-01.internal', 'x.y', 'a'.repeat(63) + '.example.org']) {
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      const hello = await captureHello(t, { servername, maxVersion });
      t.same(norm(parseSni(hello)), { kind: 'name', name: servername.toLowerCase() }, `${servername} (${maxVersion}, ${hello.length} bytes)`);
      // application data or a second record after the hello does not change the answer
      t.same(norm(parseSni(Buffer.concat([hello, Buffer.from([0x14, 3, 3, 0, 1, 1])]))), { kind: 'name', name: servername.toLowerCase() });
    }
  }
});

t.test('a hello split at every byte boundary: need-more for each prefix, then the name', async (t) => {
  const hello = await captureHello(t, { servername: 'DB.Example.com' });
  const bad: string[] = [];
  for (let i = 0; i < hello.length; i++) {
    const r = parseSni(hello.subarray(0, i));
    if (r.kind !== 'need-more') bad.push(`prefix ${i}/${hello.length}: ${JSON.stringify(r)}`);
  }
  t.same(bad, [], 'every proper prefix needs more');
  t.same(norm(parseSni(hello)), { kind: 'name', name: 'db.example.com' });
});

t.test('a hello split across several TLS records gives the same name', async (t) => {
  const hello = await captureHello(t, { servername: 'DB.Example.com' });
  const hsLen = hello.length - 5;
  const framings = [
    [Math.floor(hsLen / 3), Math.floor(hsLen / 3)],
    [1, 3], // the handshake header itself split across records
    [2, hsLen - 10],
    [hsLen - 1], // the last byte alone in its own record
  ];
  for (const sizes of framings) {
    const recs = reframe(hello, sizes);
    t.equal(recs.length, hello.length + 5 * sizes.length, `re-framed into ${sizes.length + 1} records`);
    t.same(norm(parseSni(recs)), { kind: 'name', name: 'db.example.com' }, `fragments ${sizes.join('+')}+rest`);
    const bad: string[] = [];
    for (let i = 0; i < recs.length; i++) {
      const r = parseSni(recs.subarray(0, i));
      if (r.kind !== 'need-more') bad.push(`prefix ${i}/${recs.length}: ${JSON.stringify(r)}`);
    }
    t.same(bad, [], `fragments ${sizes.join('+')}+rest: every proper prefix needs more`);
  }
});

t.test('a hello without SNI gives none', async (t) => {
  // node:tls sends no server_name when connecting to an IP without a servername
  const hello = await captureHello(t, {});
  t.same(parseSni(hello), { kind: 'none' });
  t.same(parseSni(reframe(hello, [7, 40])), { kind: 'none' }, 'also across records');
});

t.test('bytes that are not TLS give not-tls', async (t) => {
  t.same(parseSni(Buffer.from('GET / HTTP/1.1\r\nHost: db.example.com\r\n\r\n')), { kind: 'not-tls' });
  t.same(parseSni(Buffer.from('G')), { kind: 'not-tls' }, 'one byte is enough to tell');
  t.same(parseSni(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), { kind: 'not-tls' });
  t.same(parseSni(Buffer.from([0x16, 0x02, 0x00, 0x10, 0x00])), { kind: 'not-tls' }, 'record version 2');
  t.same(parseSni(Buffer.from([0x17, 0x03, 0x03, 0x00, 0x10, 1, 2])), { kind: 'not-tls' }, 'application data record first');
  t.same(parseSni(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0])), { kind: 'not-tls' }, 'a ServerHello, not a ClientHello');
  t.same(parseSni(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])), { kind: 'not-tls' }, 'an empty record');
  t.same(parseSni(Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])), { kind: 'not-tls' }, 'an SSLv2-style hello');
  t.same(parseSni(Buffer.alloc(0)), { kind: 'need-more' }, 'nothing yet: need more');
  t.same(parseSni(Buffer.from([0x16])), { kind: 'need-more' }, 'a plausible first byte: need more');
  let tls = 0;
  for (let i = 0; i < 2_000; i++) {
    const b = Buffer.from(Array.from({ length: 1 + Math.floor(Math.random() * 100) }, () => Math.floor(Math.random() * 256)));
    if (b[0] === 0x16) {
      tls++;
      continue;
    }
    const r = parseSni(b);
    if (r.kind !== 'not-tls') t.fail(`random bytes ${b.toString('hex')}: ${JSON.stringify(r)}`);
  }
  t.pass(`random bytes not starting with 0x16 are not-tls (${2_000 - tls} cases)`);
});

t.test('a ClientHello claiming more than 64 KiB is too-large, exactly 64 KiB is read', async (t) => {
  t.equal(MAX_HELLO, 64 * 1024);
  const claim = (hsLen: number, fragment: number): Buffer => {
    const rec = Buffer.alloc(5 + 4);
    rec[0] = 0x16;
    rec[1] = 3;
    rec[2] = 1;
    rec.writeUInt16BE(fragment, 3);
    rec[5] = 1; // client_hello
    rec.writeUIntBE(hsLen, 6, 3);
    return rec;
  };
  t.same(parseSni(claim(0xffffff, 16384)), { kind: 'too-large' }, '16 MiB claimed, only the header in');
  t.same(parseSni(claim(MAX_HELLO - 3, 16384)), { kind: 'too-large' }, 'one byte over: 4 + length = 65537');
  t.same(parseSni(claim(MAX_HELLO - 4, 16384)), { kind: 'need-more' }, 'exactly 64 KiB: keep reading');
  // the whole first record in, still claiming too much
  const full = Buffer.concat([claim(0x20000, 16384), Buffer.alloc(16384 - 4)]);
  t.same(parseSni(full), { kind: 'too-large' }, 'a full first record of a 128 KiB hello');

  // real hellos padded to exactly the limit (name found in the last record) and one byte past it
  const hello = await captureHello(t, { servername: 'Big.Example.com' });
  const atLimit = paddedHello(hello, MAX_HELLO);
  t.same(norm(parseSni(atLimit)), { kind: 'name', name: 'big.example.com' }, `a ${MAX_HELLO}-byte hello in ${Math.ceil(MAX_HELLO / 16384)}+ records`);
  t.same(parseSni(atLimit.subarray(0, atLimit.length - 1)), { kind: 'need-more' }, 'its last byte missing');
  const over = paddedHello(hello, MAX_HELLO + 1);
  t.same(parseSni(over), { kind: 'too-large' }, 'one byte over the limit');
  t.same(parseSni(over.subarray(0, 9)), { kind: 'too-large' }, 'known from its first 9 bytes');
});

t.test('random, truncated and mutated hellos never throw and stay fast', async (t) => {
  const hellos = [
    await captureHello(t, { servername: 'DB.Example.com' }),
    await captureHello(t, { servername: 'x.y', maxVersion: 'TLSv1.2' }),
    await captureHello(t, {}),
  ];
  hellos.push(reframe(hellos[0]!, [1, 3, 50]));
  const KINDS = new Set(['need-more', 'name', 'none', 'not-tls', 'too-large']);
  const failures: string[] = [];
  let runs = 0;
  const started = performance.now();
  for (let i = 0; i < 20_000 && failures.length < 10; i++) {
    const base = hellos[i % hellos.length]!;
    const m = Buffer.from(base);
    const flips = 1 + Math.floor(Math.random() * 6);
    for (let k = 0; k < flips; k++) {
      const at = Math.floor(Math.random() * m.length);
      // flip a byte; sometimes max out a length field's high byte
      m[at] = Math.random() < 0.2 ? 0xff : Math.floor(Math.random() * 256);
    }
    const cut = Math.random() < 0.5 ? m.length : Math.floor(Math.random() * (m.length + 1));
    const input = m.subarray(0, cut);
    runs++;
    try {
      const r = parseSni(input);
      if (!KINDS.has(r.kind)) failures.push(`kind ${JSON.stringify(r)}`);
      if (r.kind === 'name' && !(r.name.length > 0 && r.name.length <= 255 && /^[A-Za-z0-9._-]+$/.test(r.name)))
        failures.push(`name ${JSON.stringify(r.name)} from ${input.toString('hex')}`);
    } catch (err) {
      failures.push(`threw ${(err as Error).message} on ${input.toString('hex')}`);
    }
  }
  const elapsed = performance.now() - started;
  t.same(failures, [], `${runs} mutated hellos`);
  t.ok(elapsed < 5_000, `${runs} parses in ${elapsed.toFixed(0)}ms (bounded)`);

  // the worst framing: a hello near the limit sent as 1-byte records, parsed again as each record comes in
  const tiny = reframe(paddedHello(hellos[0]!, 8192), Array(8191).fill(1));
  const t0 = performance.now();
  let r: SniResult = { kind: 'need-more' };
  for (let end = 6; end <= tiny.length; end += 6 * 97) r = parseSni(tiny.subarray(0, end));
  r = parseSni(tiny);
  const worst = performance.now() - t0;
  t.same(norm(r), { kind: 'name', name: 'db.example.com' }, '8 KiB hello in 8192 one-byte records');
  t.ok(worst < 5_000, `repeated parses of a ${tiny.length}-byte, 8192-record hello in ${worst.toFixed(0)}ms`);
});
