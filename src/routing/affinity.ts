/**
 * Affinity keys: `ip:10.1.2.3`, `ip:10.1.2.0/24`, `ip:2001:db8::/64`,
 * `sni:db.example.com`. IPv4-mapped IPv6 counts as IPv4; a key at the
 * full prefix carries no suffix.
 */
import ipaddr from 'ipaddr.js';

export interface AffinityOptions {
  readonly ipv4_prefix: number;
  readonly ipv6_prefix: number;
}

/** Four-part decimal IPv4, no leading zeros (ipaddr.js would also take `10.1`, `0x0a.1`, or `010.1.2.3` as octal). */
const DOTTED = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Canonical text of an address: IPv4 dotted (mapped IPv6 folded), IPv6 in RFC 5952 form. Throws if not an IP address. */
export function canonicalIp(address: string): string {
  if (DOTTED.test(address)) return address;
  if (address.startsWith('::ffff:') && DOTTED.test(address.slice(7))) return address.slice(7);
  if (!address.includes(':')) throw new Error(`not an IP address: "${address}"`);
  const parsed = ipaddr.process(address.replace(/%.*$/, ''));
  return parsed.kind() === 'ipv6' ? (parsed as ipaddr.IPv6).toRFC5952String() : parsed.toString();
}

/** The affinity key of a client address. Throws on a string that is not an IP address. */
export function sourceIpKey(address: string, opts: AffinityOptions): string {
  const ip = canonicalIp(address);
  const v6 = ip.includes(':');
  const bits = v6 ? opts.ipv6_prefix : opts.ipv4_prefix;
  if (bits === (v6 ? 128 : 32)) return `ip:${ip}`;
  return `ip:${v6 ? maskedNetwork(ip, bits) : maskedV4(ip, bits)}/${bits}`;
}

/** An IPv4 network in dotted form, masked in a 32-bit integer (ip is canonical dotted). */
function maskedV4(ip: string, bits: number): string {
  const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
  const mask = bits === 0 ? 0 : ~0 << (32 - bits);
  const n = (((a << 24) | (b << 16) | (c << 8) | d) & mask) >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function maskedNetwork(ip: string, bits: number): string {
  const net = ipaddr.parse(ip);
  const bytes = net.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  const masked = ipaddr.fromByteArray(bytes);
  return masked.kind() === 'ipv6' ? (masked as ipaddr.IPv6).toRFC5952String() : masked.toString();
}

/** A server name as a key: lower-cased, one trailing dot dropped. */
export function sniKey(serverName: string): string {
  const name = serverName.toLowerCase();
  return `sni:${name.endsWith('.') ? name.slice(0, -1) : name}`;
}
