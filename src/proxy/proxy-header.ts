/**
 * PROXY protocol v1/v2: incremental, bounded framing of our own around
 * proxy-protocol-js, which parses and builds the header proper. Pure: no
 * sockets. `parseProxyHeader` says `need-more` until a whole header is in.
 */
import ipaddr from 'ipaddr.js';
import {
  Command,
  INETProtocol,
  IPv4Address,
  IPv4ProxyAddress,
  IPv6Address,
  IPv6ProxyAddress,
  Peer,
  TransportProtocol,
  V1ProxyProtocol,
  V2ProxyProtocol,
} from 'proxy-protocol-js';

export const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The longest v1 line, CRLF included (spec: 107 bytes). */
export const V1_MAX = 107;
const V2_FIXED = 16;

export interface Endpoint {
  readonly address: string; // canonical IP text
  readonly port: number;
}

export type ProxyParse =
  | { readonly kind: 'need-more' }
  /** The bytes do not start with a PROXY signature. */
  | { readonly kind: 'none' }
  /** source/destination are null for v1 UNKNOWN, v2 LOCAL and v2 UNSPEC: keep the socket's addresses. */
  | { readonly kind: 'header'; readonly version: 1 | 2; readonly length: number; readonly source: Endpoint | null; readonly destination: Endpoint | null }
  | { readonly kind: 'invalid'; readonly reason: string };

const NEED_MORE: ProxyParse = { kind: 'need-more' };
const NONE: ProxyParse = { kind: 'none' };

/** Is `buf` (possibly short) the start of a v1 or v2 signature? 'yes' | 'no' | 'maybe' (too short to tell). */
export function signatureOf(buf: Buffer): 1 | 2 | 'maybe' | 'no' {
  const v1 = prefixMatch(buf, V1_SIGNATURE);
  const v2 = prefixMatch(buf, V2_SIGNATURE);
  if (v1 === 'full') return 1;
  if (v2 === 'full') return 2;
  return v1 === 'prefix' || v2 === 'prefix' ? 'maybe' : 'no';
}

function prefixMatch(buf: Buffer, sig: Buffer): 'full' | 'prefix' | 'no' {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return 'no';
  return buf.length >= sig.length ? 'full' : 'prefix';
}

/** Parse the header at the start of `buf`. Never throws, never reads past a header's bound. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  const sig = signatureOf(buf);
  if (sig === 'no') return NONE;
  if (sig === 'maybe') return NEED_MORE;
  return sig === 1 ? parseV1(buf) : parseV2(buf);
}

function parseV1(buf: Buffer): ProxyParse {
  const limit = Math.min(buf.length, V1_MAX);
  const lf = buf.subarray(0, limit).indexOf(0x0a);
  if (lf < 0) return buf.length >= V1_MAX ? invalid('v1 header longer than 107 bytes') : NEED_MORE;
  if (lf === 0 || buf[lf - 1] !== 0x0d) return invalid('v1 header line does not end with CRLF');
  const line = buf.toString('latin1', 0, lf + 1);
  if (/^PROXY UNKNOWN[ \r]/.test(line)) return { kind: 'header', version: 1, length: lf + 1, source: null, destination: null };
  let parsed: V1ProxyProtocol;
  try {
    parsed = V1ProxyProtocol.parse(line);
  } catch {
    return invalid('malformed v1 header');
  }
  if (parsed.data) return invalid('malformed v1 header');
  const family = parsed.inetProtocol === INETProtocol.TCP4 ? 'ipv4' : parsed.inetProtocol === INETProtocol.TCP6 ? 'ipv6' : null;
  if (family === null) return invalid(`v1 protocol ${String(parsed.inetProtocol)} not supported`);
  const src = endpoint(parsed.source.ipAddress, parsed.source.port, family);
  const dst = endpoint(parsed.destination.ipAddress, parsed.destination.port, family);
  if (typeof src === 'string') return invalid(`v1 source ${src}`);
  if (typeof dst === 'string') return invalid(`v1 destination ${dst}`);
  return { kind: 'header', version: 1, length: lf + 1, source: src, destination: dst };
}

function endpoint(address: string, port: number, family: 'ipv4' | 'ipv6'): Endpoint | string {
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `port ${port} out of range`;
  if (family === 'ipv4' ? !ipaddr.IPv4.isValidFourPartDecimal(address) : !ipaddr.IPv6.isValid(address)) return `address "${address}" is not ${family}`;
  return { address: canonical(ipaddr.parse(address)), port };
}

function canonical(a: ipaddr.IPv4 | ipaddr.IPv6): string {
  if (a.kind() === 'ipv6') {
    const v6 = a as ipaddr.IPv6;
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toRFC5952String();
  }
  return a.toString();
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < V2_FIXED) return NEED_MORE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid(`v2 version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`v2 command ${cmd}`);
  const total = V2_FIXED + buf.readUInt16BE(14);
  if (buf.length < total) return NEED_MORE;
  const famProto = buf[13]!;
  if (cmd === 0) return { kind: 'header', version: 2, length: total, source: null, destination: null }; // LOCAL
  const fam = famProto >> 4;
  const proto = famProto & 0x0f;
  if (fam === 0) return { kind: 'header', version: 2, length: total, source: null, destination: null }; // UNSPEC
  if (fam === 3) return invalid('v2 unix sockets not supported');
  if (fam > 3 || proto > 2) return invalid('v2 unknown address family or transport');
  const need = fam === 1 ? 12 : 36;
  if (total - V2_FIXED < need) return invalid('v2 address block shorter than its family');
  let parsed: V2ProxyProtocol;
  try {
    parsed = V2ProxyProtocol.parse(new Uint8Array(buf.buffer, buf.byteOffset, total));
  } catch {
    return invalid('malformed v2 header');
  }
  const a = parsed.proxyAddress;
  if (a instanceof IPv4ProxyAddress) {
    return {
      kind: 'header',
      version: 2,
      length: total,
      source: { address: a.sourceAddress.address.join('.'), port: a.sourcePort },
      destination: { address: a.destinationAddress.address.join('.'), port: a.destinationPort },
    };
  }
  if (a instanceof IPv6ProxyAddress) {
    return {
      kind: 'header',
      version: 2,
      length: total,
      source: { address: canonical(ipaddr.fromByteArray([...a.sourceAddress.address])), port: a.sourcePort },
      destination: { address: canonical(ipaddr.fromByteArray([...a.destinationAddress.address])), port: a.destinationPort },
    };
  }
  return invalid('v2 unsupported address');
}

function invalid(reason: string): ProxyParse {
  return { kind: 'invalid', reason };
}

/**
 * The header l4lb writes to a backend. Mixed families are sent as IPv6
 * (the IPv4 side as ::ffff:a.b.c.d), as the formats need one family.
 */
export function buildProxyHeader(version: 'v1' | 'v2', src: Endpoint, dst: Endpoint): Buffer {
  let s = ipaddr.parse(src.address);
  let d = ipaddr.parse(dst.address);
  if (s.kind() !== d.kind()) {
    if (s.kind() === 'ipv4') s = (s as ipaddr.IPv4).toIPv4MappedAddress();
    if (d.kind() === 'ipv4') d = (d as ipaddr.IPv4).toIPv4MappedAddress();
  }
  const v6 = s.kind() === 'ipv6';
  if (version === 'v1') {
    const text = (a: ipaddr.IPv4 | ipaddr.IPv6) => (v6 ? (a as ipaddr.IPv6).toRFC5952String() : a.toString());
    const line = new V1ProxyProtocol(v6 ? INETProtocol.TCP6 : INETProtocol.TCP4, new Peer(text(s), src.port), new Peer(text(d), dst.port)).build();
    return Buffer.from(line, 'latin1');
  }
  const addr = v6
    ? new IPv6ProxyAddress(IPv6Address.createFrom(s.toByteArray()), src.port, IPv6Address.createFrom(d.toByteArray()), dst.port)
    : new IPv4ProxyAddress(IPv4Address.createFrom(s.toByteArray()), src.port, IPv4Address.createFrom(d.toByteArray()), dst.port);
  const bytes = new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, addr).build();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
