/**
 * Affinity keys (SPEC §1 step 3): `ip:10.1.2.3`, `ip:10.1.2.0/24`,
 * `ip:2001:db8::/64`, `sni:db.example.com`. IPv4-mapped IPv6 counts as IPv4,
 * IPv6 is canonical (RFC 5952), a full prefix has no suffix; and, as a
 * property, every address of one /prefix shares one key whose network
 * contains it.
 */
import t from 'tap';
import ipaddr from 'ipaddr.js';
import { canonicalIp, sourceIpKey, sniKey } from '../../src/routing/affinity';
import { rng } from '../util/random';

const FULL = { ipv4_prefix: 32, ipv6_prefix: 128 };
const OFFICE = { ipv4_prefix: 24, ipv6_prefix: 64 };


t.test('source_ip keys', async (t) => {
  const cases: [string, { ipv4_prefix: number; ipv6_prefix: number }, string][] = [
    ['10.1.2.3', FULL, 'ip:10.1.2.3'],
    ['10.1.2.3', OFFICE, 'ip:10.1.2.0/24'],
    ['10.1.2.255', OFFICE, 'ip:10.1.2.0/24'],
    ['10.1.2.3', { ipv4_prefix: 16, ipv6_prefix: 128 }, 'ip:10.1.0.0/16'],
    ['10.1.2.3', { ipv4_prefix: 0, ipv6_prefix: 128 }, 'ip:0.0.0.0/0'],
    ['10.1.2.3', { ipv4_prefix: 31, ipv6_prefix: 128 }, 'ip:10.1.2.2/31'],
    ['::ffff:10.1.2.3', FULL, 'ip:10.1.2.3'],
    ['::ffff:10.1.2.3', OFFICE, 'ip:10.1.2.0/24'],
    ['::FFFF:10.1.2.3', FULL, 'ip:10.1.2.3'],
    ['::ffff:a01:203', FULL, 'ip:10.1.2.3'],
    ['2001:db8::1', FULL, 'ip:2001:db8::1'],
    ['2001:db8::1', OFFICE, 'ip:2001:db8::/64'],
    ['2001:db8:0:0:ffff::1', OFFICE, 'ip:2001:db8::/64'],
    ['2001:db8:0:1:ffff::1', OFFICE, 'ip:2001:db8:0:1::/64'],
    ['2001:db8::1', { ipv4_prefix: 32, ipv6_prefix: 48 }, 'ip:2001:db8::/48'],
    ['2001:db8:abcd:12::1', { ipv4_prefix: 32, ipv6_prefix: 56 }, 'ip:2001:db8:abcd::/56'],
    ['2001:db8::1', { ipv4_prefix: 32, ipv6_prefix: 0 }, 'ip:::/0'],
    ['fe80::1%eth0', FULL, 'ip:fe80::1'],
    // the IPv6 prefix does not apply to mapped IPv4, nor the IPv4 prefix to IPv6
    ['::ffff:10.1.2.3', { ipv4_prefix: 32, ipv6_prefix: 64 }, 'ip:10.1.2.3'],
    ['2001:db8::1', { ipv4_prefix: 24, ipv6_prefix: 128 }, 'ip:2001:db8::1'],
  ];
  for (const [address, opts, key] of cases) {
    t.equal(sourceIpKey(address, opts), key, `${address} /${opts.ipv4_prefix} /${opts.ipv6_prefix}`);
  }
});

t.test('IPv6 is canonical (RFC 5952) however it is spelled', async (t) => {
  const groups: [string, string[]][] = [
    ['2001:db8::1', ['2001:db8::1', '2001:DB8::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8:0:0:0:0:0:1', '2001:db8::0:1', '2001:0DB8::0001']],
    ['::1', ['::1', '0:0:0:0:0:0:0:1', '0000:0000:0000:0000:0000:0000:0000:0001']],
    ['::', ['::', '0:0:0:0:0:0:0:0']],
    // the longest run of zeros is shortened; on a tie, the first one
    ['2001:db8::1:0:0:1', ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1']],
    ['2001:db8:0:1:1:1:1:1', ['2001:db8:0:1:1:1:1:1', '2001:db8::1:1:1:1:1']], // a single zero group is not shortened
    ['2001:db8::2:1', ['2001:db8:0:0:0:0:2:1']],
    ['fe80::1', ['fe80::1%eth0', 'FE80:0:0:0:0:0:0:1%25']],
  ];
  for (const [canonical, spellings] of groups) {
    for (const s of spellings) t.equal(canonicalIp(s), canonical, `${s} → ${canonical}`);
    t.same(new Set(spellings.map((s) => sourceIpKey(s, FULL))), new Set([`ip:${canonical}`]), `one key for every spelling of ${canonical}`);
  }
});

t.test('IPv4 passes through; non-addresses throw', async (t) => {
  t.equal(canonicalIp('10.1.2.3'), '10.1.2.3');
  t.equal(canonicalIp('0.0.0.0'), '0.0.0.0');
  t.equal(canonicalIp('255.255.255.255'), '255.255.255.255');
  // ipaddr.js alone would read these as 8.1.2.3 (octal), 10.0.0.1 and 0.0.4.210
  for (const bad of ['010.1.2.3', '10.1', '1234', '256.1.2.3', 'db.example.com', '']) {
    t.throws(() => canonicalIp(bad), { message: `not an IP address: "${bad}"` }, `"${bad}" is refused`);
    t.throws(() => sourceIpKey(bad, OFFICE), `sourceIpKey("${bad}") throws`);
  }
  t.throws(() => canonicalIp('not:an:address'));
});

t.test('property: one key per IPv4 network, and the key network contains the address', async (t) => {
  const r = rng(0xaff1);
  const u32 = () => Math.floor(r() * 2 ** 32) >>> 0;
  const text = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
  const failures: string[] = [];
  for (let i = 0; i < 5000 && failures.length < 5; i++) {
    const prefix = Math.floor(r() * 33); // 0..32
    const opts = { ipv4_prefix: prefix, ipv6_prefix: 128 };
    const hostMask = prefix === 32 ? 0 : (2 ** (32 - prefix) - 1) >>> 0;
    const a = u32();
    const sibling = ((a & ~hostMask) | (u32() & hostMask)) >>> 0; // same /prefix
    const ka = sourceIpKey(text(a), opts);
    const ks = sourceIpKey(`::ffff:${text(sibling)}`, opts); // mapped spelling: same key still
    if (ka !== ks) failures.push(`${text(a)} and ${text(sibling)} /${prefix}: ${ka} vs ${ks}`);
    if (prefix === 32) {
      if (ka !== `ip:${text(a)}`) failures.push(`/32 key of ${text(a)} is ${ka}`);
      continue;
    }
    const m = /^ip:(.+)\/(\d+)$/.exec(ka);
    if (!m || Number(m[2]) !== prefix) {
      failures.push(`${text(a)} /${prefix}: key ${ka} has no /${prefix} suffix`);
      continue;
    }
    const net = ipaddr.IPv4.parse(m[1]!);
    if (!ipaddr.IPv4.parse(text(a)).match(net, prefix)) failures.push(`${ka} does not contain ${text(a)}`);
    if (net.toString() !== text((a & ~hostMask) >>> 0)) failures.push(`${ka}: network is not masked (${text(a)})`);
    if (prefix > 0) {
      const other = (a ^ (1 << (32 - prefix))) >>> 0; // flip the last network bit: another network
      if (sourceIpKey(text(other), opts) === ka) failures.push(`${text(other)} shares ${ka}`);
    }
  }
  t.same(failures, [], '5000 random addresses and prefixes');
});

t.test('property: one key per IPv6 network', async (t) => {
  const r = rng(0x6);
  const failures: string[] = [];
  for (let i = 0; i < 2000 && failures.length < 5; i++) {
    const prefix = Math.floor(r() * 129);
    const bytes = Array.from({ length: 16 }, () => Math.floor(r() * 256));
    if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) continue; // mapped IPv4
    const sibling = bytes.map((b, j) => {
      const keep = Math.max(0, Math.min(8, prefix - j * 8));
      const mask = (0xff << (8 - keep)) & 0xff;
      return (b & mask) | (Math.floor(r() * 256) & ~mask & 0xff);
    });
    const opts = { ipv4_prefix: 32, ipv6_prefix: prefix };
    const a = ipaddr.fromByteArray(bytes) as ipaddr.IPv6;
    const s = ipaddr.fromByteArray(sibling) as ipaddr.IPv6;
    const ka = sourceIpKey(a.toNormalizedString(), opts); // long spelling
    const ks = sourceIpKey(s.toString(), opts);
    if (ka !== ks) failures.push(`${a} and ${s} /${prefix}: ${ka} vs ${ks}`);
    if (prefix === 128) {
      if (ka !== `ip:${a.toRFC5952String()}`) failures.push(`/128 key of ${a} is ${ka}`);
      continue;
    }
    const [net, bits] = ipaddr.IPv6.parseCIDR(ka.slice(3));
    if (bits !== prefix || !a.match(net, bits)) failures.push(`${ka} does not contain ${a}`);
    if (ka.slice(3) !== `${(net as ipaddr.IPv6).toRFC5952String()}/${prefix}`) failures.push(`${ka} is not RFC 5952`);
  }
  t.same(failures, [], '2000 random IPv6 addresses and prefixes');
});

t.test('sni keys: lower-cased, one trailing dot dropped', async (t) => {
  t.equal(sniKey('db.example.com'), 'sni:db.example.com');
  t.equal(sniKey('DB.Example.COM'), 'sni:db.example.com');
  t.equal(sniKey('db.example.com.'), 'sni:db.example.com');
  t.equal(sniKey('Db.Example.Com.'), 'sni:db.example.com');
  t.equal(sniKey('localhost'), 'sni:localhost');
});
