/**
 * Which protocol a client speaks, from its first bytes (SPEC §9 `protocol`
 * routes, like sslh): a TLS handshake record, an SSH banner, an HTTP/1
 * request line. Pure and bounded (at most the longest signature, 8 bytes, is
 * read); never throws.
 */

export type Protocol = 'tls' | 'ssh' | 'http' | 'other';

/** RFC 9110 §9 methods plus PATCH (RFC 5789); case-sensitive. */
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

interface Signature {
  readonly protocol: Exclude<Protocol, 'other'>;
  readonly bytes: Buffer;
}

const SIGNATURES: readonly Signature[] = [
  { protocol: 'tls', bytes: Buffer.from([0x16, 0x03]) }, // handshake record, version 3.x
  { protocol: 'ssh', bytes: Buffer.from('SSH-', 'latin1') }, // RFC 4253 §4.2 banner
  ...HTTP_METHODS.map((m): Signature => ({ protocol: 'http', bytes: Buffer.from(`${m} `, 'latin1') })),
];

/**
 * 'need-more' while the first bytes could still become more than one answer
 * (they are a proper prefix of some signature); `final` = no more bytes will
 * come, so decide with what there is (an empty buffer is 'other').
 */
export function sniffProtocol(buf: Buffer, final: boolean): Protocol | 'need-more' {
  let prefix = false;
  for (const sig of SIGNATURES) {
    const n = Math.min(buf.length, sig.bytes.length);
    let same = true;
    for (let i = 0; i < n && same; i++) same = buf[i] === sig.bytes[i];
    if (!same) continue;
    if (n === sig.bytes.length) return sig.protocol;
    prefix = true;
  }
  return prefix && !final ? 'need-more' : 'other';
}
