/**
 * parseProxyHeader / buildProxyHeader (SPEC §1 step 2, step 7): v1 text and
 * v2 binary headers, incremental (`need-more` for every proper prefix),
 * bounded (never reads past the header, v1 capped at 107 bytes), total (never
 * throws on any byte string), and build → parse round trips, mixed families
 * carried as IPv4-mapped IPv6 and folded back to IPv4 by the parser.
 */
import * as net from 'node:net';
import t, { type Test } from 'tap';
import ipaddr from 'ipaddr.js';
import {
  buildProxyHeader,
  parseProxyHeader,
  signatureOf,
  V1_MAX,
  V2_SIGNATURE,
  type Endpoint,
  type ProxyParse,
} from '../../src/proxy/proxy-header';
import { rng } from '../util/random';

// ------------------------------------------------------------ test data

const SEED = Number(process.env.PROXY_SEED ?? Math.floor(Math.random() * 2 ** 31));
t.comment(`property seed: PROXY_SEED=${SEED}`);
const rand = rng(SEED);
const int = (n: number): number => Math.floor(rand() * n);
const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));

const PAYLOAD = Buffer.from('EHLO payload\r\nsecond line\x00\x0d\x0a');

/** A v2 header by hand: signature, ver/cmd, fam/proto, then `body` (addresses + TLVs). */
function v2(verCmd: number, famProto: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = verCmd;
  head[1] = famProto;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

function tlv(type: number, value: Buffer | string): Buffer {
  const v = Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1');
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(v.length, 1);
  return Buffer.concat([h, v]);
}

function port16(p: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(p);
  return b;
}

const TLVS = Buffer.concat([
  tlv(0x01, 'h2'), // PP2_TYPE_ALPN
  tlv(0x02, 'db.example.com'), // PP2_TYPE_AUTHORITY
  tlv(0x04, Buffer.alloc(7)), // PP2_TYPE_NOOP
  tlv(0x20, Buffer.from([0x01, 0, 0, 0, 0])), // PP2_TYPE_SSL, client flag, verify 0
]);

interface Case {
  name: string;
  header: Buffer;
  version: 1 | 2;
  source: Endpoint | null;
  destination: Endpoint | null;
}

const CASES: Case[] = [
  {
    name: 'v1 TCP4 (built)',
    header: buildProxyHeader('v1', { address: '192.0.2.10', port: 51234 }, { address: '198.51.100.1', port: 443 }),
    version: 1,
    source: { address: '192.0.2.10', port: 51234 },
    destination: { address: '198.51.100.1', port: 443 },
  },
  {
    name: 'v1 TCP4 (by hand)',
    header: Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 0 65535\r\n'),
    version: 1,
    source: { address: '203.0.113.7', port: 0 },
    destination: { address: '10.0.0.1', port: 65535 },
  },
  {
    name: 'v1 TCP6 (by hand, uncompressed, upper case)',
    header: Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::2 1 65535\r\n'),
    version: 1,
    source: { address: '2001:db8::1', port: 1 },
    destination: { address: '2001:db8::2', port: 65535 },
  },
  {
    name: 'v1 TCP6 (built)',
    header: buildProxyHeader('v1', { address: '2001:db8:1::7', port: 4000 }, { address: 'fe80::1', port: 5432 }),
    version: 1,
    source: { address: '2001:db8:1::7', port: 4000 },
    destination: { address: 'fe80::1', port: 5432 },
  },
  {
    name: 'v1 UNKNOWN (short)',
    header: Buffer.from('PROXY UNKNOWN\r\n'),
    version: 1,
    source: null,
    destination: null,
  },
  {
    name: 'v1 UNKNOWN (the 107-byte worst case of the spec)',
    header: Buffer.from(
      'PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n',
    ),
    version: 1,
    source: null,
    destination: null,
  },
  {
    name: 'v2 TCP4 (built)',
    header: buildProxyHeader('v2', { address: '192.0.2.10', port: 51234 }, { address: '198.51.100.1', port: 443 }),
    version: 2,
    source: { address: '192.0.2.10', port: 51234 },
    destination: { address: '198.51.100.1', port: 443 },
  },
  {
    name: 'v2 TCP4 with TLVs (by hand)',
    header: v2(
      0x21,
      0x11,
      Buffer.concat([Buffer.from([203, 0, 113, 7]), Buffer.from([10, 1, 2, 3]), port16(40000), port16(5432), TLVS]),
    ),
    version: 2,
    source: { address: '203.0.113.7', port: 40000 },
    destination: { address: '10.1.2.3', port: 5432 },
  },
  {
    name: 'v2 TCP6 with TLVs (by hand)',
    header: v2(
      0x21,
      0x21,
      Buffer.concat([
        Buffer.from(ipaddr.parse('2001:db8::dead:beef').toByteArray()),
        Buffer.from(ipaddr.parse('2001:db8:ffff::1').toByteArray()),
        port16(1),
        port16(65535),
        TLVS,
      ]),
    ),
    version: 2,
    source: { address: '2001:db8::dead:beef', port: 1 },
    destination: { address: '2001:db8:ffff::1', port: 65535 },
  },
  {
    name: 'v2 TCP6 (built)',
    header: buildProxyHeader('v2', { address: '::1', port: 65535 }, { address: '2001:db8::5', port: 0 }),
    version: 2,
    source: { address: '::1', port: 65535 },
    destination: { address: '2001:db8::5', port: 0 },
  },
  {
    name: 'v2 LOCAL (no addresses)',
    header: v2(0x20, 0x00, Buffer.alloc(0)),
    version: 2,
    source: null,
    destination: null,
  },
  {
    name: 'v2 LOCAL carrying addresses and TLVs (ignored)',
    header: v2(0x20, 0x11, Buffer.concat([Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), port16(1), port16(2), TLVS])),
    version: 2,
    source: null,
    destination: null,
  },
  {
    name: 'v2 PROXY UNSPEC',
    header: v2(0x21, 0x00, Buffer.alloc(0)),
    version: 2,
    source: null,
    destination: null,
  },
  {
    name: 'v2 PROXY UNSPEC with TLVs',
    header: v2(0x21, 0x00, TLVS),
    version: 2,
    source: null,
    destination: null,
  },
];

const expected = (c: Case): ProxyParse => ({
  kind: 'header',
  version: c.version,
  length: c.header.length,
  source: c.source,
  destination: c.destination,
});

// ------------------------------------------------------------ valid headers

t.test('valid headers followed by payload: addresses, version and length', async (t) => {
  for (const c of CASES) {
    const whole = Buffer.concat([c.header, PAYLOAD]);
    const r = parseProxyHeader(whole);
    t.same(r, expected(c), c.name);
    if (r.kind === 'header') t.same(whole.subarray(r.length), PAYLOAD, `${c.name}: the payload starts right after the header`);
    t.same(parseProxyHeader(c.header), expected(c), `${c.name}: the header alone, nothing after it`);
  }
});

t.test('split at every byte boundary: each proper prefix needs more, the whole parses the same', async (t) => {
  for (const c of CASES) {
    const whole = Buffer.concat([c.header, PAYLOAD]);
    const want = expected(c);
    const bad: string[] = [];
    for (let i = 0; i < c.header.length; i++) {
      const r = parseProxyHeader(whole.subarray(0, i));
      if (r.kind !== 'need-more') bad.push(`prefix ${i}/${c.header.length}: ${JSON.stringify(r)}`);
      // as a socket would deliver it: the first piece, then the first piece + the rest
      const joined = parseProxyHeader(Buffer.concat([whole.subarray(0, i), whole.subarray(i)]));
      if (JSON.stringify(joined) !== JSON.stringify(want)) bad.push(`split at ${i}: ${JSON.stringify(joined)}`);
    }
    for (let i = c.header.length; i <= whole.length; i++) {
      const r = parseProxyHeader(whole.subarray(0, i));
      if (JSON.stringify(r) !== JSON.stringify(want)) bad.push(`header + ${i - c.header.length} payload bytes: ${JSON.stringify(r)}`);
    }
    t.same(bad, [], c.name);
  }
});

t.test('signatureOf tells a signature, its prefixes and other bytes apart', async (t) => {
  t.equal(signatureOf(Buffer.from('PROXY TCP4 ')), 1);
  t.equal(signatureOf(V2_SIGNATURE), 2);
  t.equal(signatureOf(Buffer.alloc(0)), 'maybe');
  t.equal(signatureOf(Buffer.from('PROX')), 'maybe');
  t.equal(signatureOf(Buffer.from('\r\n\r\n')), 'maybe', 'a prefix of the v2 signature');
  t.equal(signatureOf(Buffer.from('PING\r\n')), 'no');
  t.equal(signatureOf(Buffer.from('GET / HTTP/1.1\r\n')), 'no');
  t.equal(signatureOf(Buffer.from([0x16, 0x03, 0x01])), 'no');
  t.same(parseProxyHeader(Buffer.from('PING\r\n')), { kind: 'none' });
  t.same(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10])), { kind: 'none' });
});

// ------------------------------------------------------------ invalid headers

function expectInvalid(t: Test, text: string | Buffer, why: string): void {
  const r = parseProxyHeader(Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1'));
  t.equal(r.kind, 'invalid', `${why}: ${JSON.stringify(r)}`);
}

t.test('v1 without CRLF within 107 bytes is invalid, not need-more', async (t) => {
  t.equal(V1_MAX, 107);
  const long = 'PROXY TCP4 ' + '1'.repeat(200);
  expectInvalid(t, long, '200 bytes, no LF');
  expectInvalid(t, long.slice(0, 107), 'exactly 107 bytes, no LF');
  t.equal(parseProxyHeader(Buffer.from(long.slice(0, 106))).kind, 'need-more', '106 bytes without LF may still end with CRLF');
  // a 108-byte line whose LF would come at byte 108
  const line108 = 'PROXY UNKNOWN ' + 'f'.repeat(108 - 'PROXY UNKNOWN '.length - 2) + '\r\n';
  t.equal(line108.length, 108);
  expectInvalid(t, line108, 'a 108-byte line');
  expectInvalid(t, 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 'LF without CR');
  expectInvalid(t, 'PROXY \n', 'LF without CR, right after the signature');
});

t.test('v1 with bad ports or addresses is invalid', async (t) => {
  const bad = [
    ['PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n', 'source port 65536'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 80 99999\r\n', 'destination port 99999'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n', 'negative port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 x 80\r\n', 'port not a number'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n', 'one port missing'],
    ['PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n', 'octet 256'],
    ['PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n', 'three octets'],
    ['PROXY TCP4 1.2.3.4 example.com 1 2\r\n', 'a host name'],
    ['PROXY TCP4 ::1 5.6.7.8 1 2\r\n', 'IPv6 source under TCP4'],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'IPv4 source under TCP6'],
    ['PROXY TCP6 fe80::zz ::1 1 2\r\n', 'bad hex in IPv6'],
    ['PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n', 'nine groups'],
    ['PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', 'UDP4 is not a v1 protocol'],
    ['PROXY TCP4\r\n', 'no addresses'],
    ['PROXY \r\n', 'nothing after the signature'],
  ] as const;
  for (const [text, why] of bad) expectInvalid(t, text, why);
});

t.test('v2 with a bad version, command, family or length is invalid', async (t) => {
  const addr4 = Buffer.concat([Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), port16(1), port16(2)]);
  expectInvalid(t, v2(0x11, 0x11, addr4), 'version 1 in the binary format');
  expectInvalid(t, v2(0x31, 0x11, addr4), 'version 3');
  expectInvalid(t, v2(0x22, 0x11, addr4), 'command 2');
  expectInvalid(t, v2(0x21, 0x31, Buffer.alloc(216)), 'AF_UNIX');
  expectInvalid(t, v2(0x21, 0x41, addr4), 'family 4');
  expectInvalid(t, v2(0x21, 0x11, addr4.subarray(0, 11)), 'IPv4 block of 11 bytes');
  expectInvalid(t, v2(0x21, 0x21, Buffer.alloc(35)), 'IPv6 block of 35 bytes');
});

// ------------------------------------------------------------ properties

const KINDS = new Set(['need-more', 'none', 'header', 'invalid']);

/** Everything a result must satisfy whatever the input; returns the violations. */
function checkResult(input: Buffer, r: ProxyParse): string | null {
  if (!KINDS.has(r.kind)) return `unknown kind ${JSON.stringify(r)}`;
  if (r.kind !== 'header') return null;
  if (!Number.isInteger(r.length) || r.length <= 0 || r.length > input.length) return `length ${r.length} of ${input.length} bytes`;
  if (r.version !== 1 && r.version !== 2) return `version ${String(r.version)}`;
  if (r.version === 1 && r.length > V1_MAX) return `v1 length ${r.length}`;
  if ((r.source === null) !== (r.destination === null)) return 'only one of source/destination';
  for (const e of [r.source, r.destination]) {
    if (e === null) continue;
    if (net.isIP(e.address) === 0) return `address ${JSON.stringify(e.address)}`;
    if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) return `port ${e.port}`;
  }
  return null;
}

/** Inputs that reach deep into the parser: signatures with random tails, mutated valid headers. */
function randomInput(): Buffer {
  const c = CASES[int(CASES.length)]!;
  switch (int(6)) {
    case 0:
      return bytes(int(300));
    case 1:
      return Buffer.concat([Buffer.from('PROXY '), bytes(int(130))]);
    case 2: {
      // printable v1-looking junk: digits, dots, colons, spaces, CR/LF
      const alphabet = '0123456789abcdefABCDEF.: \r\nTCPUNKOW46-';
      const tail = Array.from({ length: int(120) }, () => alphabet[int(alphabet.length)]).join('');
      return Buffer.from('PROXY ' + ['TCP4 ', 'TCP6 ', 'UNKNOWN', ''][int(4)] + tail, 'latin1');
    }
    case 3:
      return Buffer.concat([V2_SIGNATURE, bytes(int(300))]);
    case 4: {
      // a valid header with a few bytes flipped
      const m = Buffer.concat([c.header, PAYLOAD]);
      for (let k = 1 + int(4); k > 0; k--) m[int(m.length)] = int(256);
      return m;
    }
    default: {
      // a v2 header with a random length field and random body
      const body = bytes(int(80));
      const h = v2(0x20 | int(3), int(256), body);
      h.writeUInt16BE(int(65536), 14);
      return h;
    }
  }
}

t.test('property: any bytes and any truncation: never throws, a known kind, length within the input', async (t) => {
  const failures: string[] = [];
  const RUNS = 20_000;
  for (let i = 0; i < RUNS && failures.length < 10; i++) {
    const input = randomInput();
    for (const cut of [input.length, int(input.length + 1)]) {
      const buf = input.subarray(0, cut);
      let r: ProxyParse;
      try {
        r = parseProxyHeader(buf);
      } catch (err) {
        failures.push(`threw ${(err as Error).message} on ${buf.toString('hex')}`);
        continue;
      }
      const problem = checkResult(buf, r);
      if (problem !== null) failures.push(`${problem} on ${buf.toString('hex')}`);
      // a header is decided by its own bytes only: the same bytes alone give the same answer
      if (r.kind === 'header') {
        const again = parseProxyHeader(buf.subarray(0, r.length));
        if (JSON.stringify(again) !== JSON.stringify(r)) failures.push(`header alone parses differently on ${buf.toString('hex')}`);
      }
    }
  }
  t.same(failures, [], `${RUNS} random inputs (seed ${SEED})`);
});

t.test('property: a proper prefix of a valid header is never a decision', async (t) => {
  const failures: string[] = [];
  for (let i = 0; i < 2_000; i++) {
    const src = randomEndpoint(int(2) === 0 ? 4 : 6);
    const dst = randomEndpoint(int(2) === 0 ? 4 : 6);
    const h = buildProxyHeader(int(2) === 0 ? 'v1' : 'v2', src, dst);
    const cut = int(h.length);
    const r = parseProxyHeader(h.subarray(0, cut));
    if (r.kind !== 'need-more') failures.push(`${h.toString('hex')} cut at ${cut}: ${JSON.stringify(r)}`);
  }
  t.same(failures, []);
});

// ------------------------------------------------------------ round trips

function randomEndpoint(family: 4 | 6): Endpoint {
  const port = int(65536);
  if (family === 4) return { address: [int(256), int(256), int(256), int(256)].join('.'), port };
  // groups with many zeros, so `::` compression is exercised; never IPv4-mapped
  for (;;) {
    const groups = Array.from({ length: 8 }, () => (int(3) === 0 ? 0 : int(65536)));
    const a = ipaddr.parse(groups.map((g) => g.toString(16)).join(':')) as ipaddr.IPv6;
    if (!a.isIPv4MappedAddress()) return { address: a.toRFC5952String(), port };
  }
}

/** What the parser reports for an address given to the builder: canonical text, mapped IPv6 folded to IPv4. */
function canonical(address: string): string {
  const a = ipaddr.parse(address);
  if (a.kind() === 'ipv4') return a.toString();
  const v6 = a as ipaddr.IPv6;
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toRFC5952String();
}

t.test('round trip build → parse for random IPv4 and IPv6 endpoints, v1 and v2', async (t) => {
  const failures: string[] = [];
  for (let i = 0; i < 5_000; i++) {
    const fam = int(2) === 0 ? 4 : 6;
    const src = randomEndpoint(fam);
    const dst = randomEndpoint(fam);
    for (const version of ['v1', 'v2'] as const) {
      const h = buildProxyHeader(version, src, dst);
      const r = parseProxyHeader(Buffer.concat([h, PAYLOAD]));
      const want = {
        kind: 'header',
        version: version === 'v1' ? 1 : 2,
        length: h.length,
        source: { address: canonical(src.address), port: src.port },
        destination: { address: canonical(dst.address), port: dst.port },
      };
      if (JSON.stringify(r) !== JSON.stringify(want)) failures.push(`${version} ${JSON.stringify(src)} → ${JSON.stringify(dst)}: ${JSON.stringify(r)}`);
    }
  }
  t.same(failures.slice(0, 10), [], `round trips (seed ${SEED})`);
});

t.test('mixed families travel as IPv6 with ::ffff: mapping and parse back to IPv4', async (t) => {
  const v4 = { address: '192.0.2.33', port: 40001 };
  const v6 = { address: '2001:db8::33', port: 443 };

  const line = buildProxyHeader('v1', v4, v6).toString('latin1');
  t.match(line, /^PROXY TCP6 ::ffff:\S+ 2001:db8::33 40001 443\r\n$/, 'v1: TCP6, the IPv4 side mapped');
  t.same(parseProxyHeader(Buffer.from(line, 'latin1')), {
    kind: 'header',
    version: 1,
    length: line.length,
    source: { address: '192.0.2.33', port: 40001 },
    destination: { address: '2001:db8::33', port: 443 },
  });

  const bin = buildProxyHeader('v2', v6, v4);
  t.equal(bin[13], 0x21, 'v2: AF_INET6 over STREAM');
  t.equal(bin.readUInt16BE(14), 36, 'v2: a 36-byte IPv6 address block');
  t.same([...bin.subarray(32, 48)], [...ipaddr.parse('::ffff:192.0.2.33').toByteArray()], 'v2: destination as ::ffff:192.0.2.33');
  t.same(parseProxyHeader(bin), {
    kind: 'header',
    version: 2,
    length: bin.length,
    source: { address: '2001:db8::33', port: 443 },
    destination: { address: '192.0.2.33', port: 40001 },
  });

  // random mixed pairs, both ways round
  const failures: string[] = [];
  for (let i = 0; i < 2_000; i++) {
    const a = randomEndpoint(4);
    const b = randomEndpoint(6);
    const [src, dst] = int(2) === 0 ? [a, b] : [b, a];
    for (const version of ['v1', 'v2'] as const) {
      const r = parseProxyHeader(buildProxyHeader(version, src, dst));
      const ok =
        r.kind === 'header' &&
        r.source?.address === canonical(src.address) &&
        r.source.port === src.port &&
        r.destination?.address === canonical(dst.address) &&
        r.destination.port === dst.port;
      if (!ok) failures.push(`${version} ${JSON.stringify(src)} → ${JSON.stringify(dst)}: ${JSON.stringify(r)}`);
    }
  }
  t.same(failures.slice(0, 10), []);

  // an inbound header whose addresses are IPv4-mapped counts as IPv4
  const mapped = parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:10.1.2.3 ::ffff:10.0.0.1 5000 6000\r\n'));
  t.same(mapped.kind === 'header' && [mapped.source, mapped.destination], [
    { address: '10.1.2.3', port: 5000 },
    { address: '10.0.0.1', port: 6000 },
  ]);
});
