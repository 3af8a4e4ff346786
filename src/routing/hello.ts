/**
 * Read what routing needs from a TLS ClientHello without terminating TLS:
 * the server name (SNI) and the offered ALPN protocol names (SPEC §9).
 * Pure and bounded: the hello may span TCP segments and several TLS
 * records; handshake bytes past `MAX_HELLO` make it `too-large`. Never
 * throws. The caller keeps every byte and replays it to the backend
 * unchanged.
 */

/** ClientHellos larger than this fall back to the fallback key (SPEC §1). */
export const MAX_HELLO = 64 * 1024;
const RECORD_HEADER = 5;
/** The largest TLSCiphertext fragment (RFC 8446 §5.2: 2^14 + 2048). */
const MAX_FRAGMENT = 16384 + 2048;
const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const HOST_NAME = 0;
/** A DNS name: letters, digits, hyphen, underscore, dots; anything else is not a usable key. */
const USABLE_NAME = /^[A-Za-z0-9._-]+$/;

export type HelloResult =
  | { readonly kind: 'need-more' }
  /**
   * A complete ClientHello. `name` is its host_name when usable (1..255 bytes
   * of /^[A-Za-z0-9._-]+$/), else null; `alpn` the protocol names of its ALPN
   * extension (latin1, in offered order), [] when absent or malformed.
   */
  | { readonly kind: 'hello'; readonly name: string | null; readonly alpn: readonly string[] }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'too-large' };

const NEED_MORE: HelloResult = Object.freeze({ kind: 'need-more' });
const NOT_TLS: HelloResult = Object.freeze({ kind: 'not-tls' });
const TOO_LARGE: HelloResult = Object.freeze({ kind: 'too-large' });
const NO_ALPN: readonly string[] = Object.freeze([]);
/** TLS, but nothing usable in it. */
const BARE_HELLO: HelloResult = Object.freeze({ kind: 'hello', name: null, alpn: NO_ALPN });

/** Look at everything received so far (from the first byte of the connection). */
export function parseClientHello(buf: Buffer): HelloResult {
  const body = gather(buf);
  switch (body) {
    case 'need-more':
      return NEED_MORE;
    case 'not-tls':
      return NOT_TLS;
    case 'too-large':
      return TOO_LARGE;
    case 'cut':
      return BARE_HELLO;
    default:
      return readBody(body);
  }
}

/**
 * The ClientHello body (after its 4-byte handshake header) gathered from the
 * handshake records at the start of `buf`, or why not. `cut`: a record after
 * the first is not a handshake record, so the hello cannot be read (TLS, but
 * nothing usable).
 */
function gather(buf: Buffer): Buffer | 'need-more' | 'not-tls' | 'too-large' | 'cut' {
  const parts: Buffer[] = [];
  let have = 0;
  let want = -1; // the ClientHello's length incl. its 4-byte handshake header, once known
  let off = 0;
  while (want < 0 || have < want) {
    if (buf.length - off < RECORD_HEADER) {
      if (off === 0 && !plausiblePrefix(buf)) return 'not-tls';
      return 'need-more';
    }
    if (buf[off] !== HANDSHAKE || buf[off + 1] !== 3) return off === 0 ? 'not-tls' : 'cut';
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > MAX_FRAGMENT) return off === 0 ? 'not-tls' : 'cut';
    const avail = buf.length - off - RECORD_HEADER;
    if (avail < len) {
      // A partial record: enough to know the hello's size?
      if (want < 0 && have + avail >= 4) {
        const head = Buffer.concat([...parts, buf.subarray(off + RECORD_HEADER)]);
        if (head[0] !== CLIENT_HELLO) return 'not-tls';
        if (4 + head.readUIntBE(1, 3) > MAX_HELLO) return 'too-large';
      }
      return 'need-more';
    }
    parts.push(buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + len));
    have += len;
    off += RECORD_HEADER + len;
    if (want < 0 && have >= 4) {
      const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (head[0] !== CLIENT_HELLO) return 'not-tls';
      want = 4 + head.readUIntBE(1, 3);
      if (want > MAX_HELLO) return 'too-large';
    }
  }
  const hello = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return hello.subarray(4, want);
}

/** The first bytes of a TLS handshake record: 0x16 0x03 ... */
function plausiblePrefix(buf: Buffer): boolean {
  if (buf.length >= 1 && buf[0] !== HANDSHAKE) return false;
  if (buf.length >= 2 && buf[1] !== 3) return false;
  return true;
}

/** The body of a ClientHello: skip to the extensions, read the first server_name and the first ALPN extension. */
function readBody(b: Buffer): HelloResult {
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return BARE_HELLO;
  p += 1 + b[p]!; // session id
  if (p + 2 > b.length) return BARE_HELLO;
  p += 2 + b.readUInt16BE(p); // cipher suites
  if (p + 1 > b.length) return BARE_HELLO;
  p += 1 + b[p]!; // compression methods
  if (p + 2 > b.length) return BARE_HELLO;
  const extEnd = Math.min(b.length, p + 2 + b.readUInt16BE(p));
  p += 2;
  let name: string | null = null;
  let alpn = NO_ALPN;
  let seenName = false;
  let seenAlpn = false;
  // Extensions up to the first that overruns the block; what was read before it stands.
  while (p + 4 <= extEnd && !(seenName && seenAlpn)) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) break;
    if (type === EXT_SERVER_NAME && !seenName) {
      seenName = true;
      name = hostName(b, p, p + len);
    } else if (type === EXT_ALPN && !seenAlpn) {
      seenAlpn = true;
      alpn = protocolNames(b, p, p + len);
    }
    p += len;
  }
  if (name === null && alpn.length === 0) return BARE_HELLO;
  return { kind: 'hello', name, alpn };
}

/** The first host_name entry of a server_name extension (RFC 6066 §3) in b[start, end), if usable. */
function hostName(b: Buffer, start: number, end: number): string | null {
  if (end - start < 2) return null;
  const listEnd = Math.min(end, start + 2 + b.readUInt16BE(start));
  let p = start + 2;
  while (p + 3 <= listEnd) {
    const type = b[p]!;
    const len = b.readUInt16BE(p + 1);
    p += 3;
    if (p + len > listEnd) return null;
    if (type === HOST_NAME) {
      if (len === 0 || len > 255) return null;
      const name = b.toString('latin1', p, p + len);
      return USABLE_NAME.test(name) ? name : null;
    }
    p += len;
  }
  return null;
}

/**
 * The ProtocolNameList of an ALPN extension (RFC 7301 §3.1) in b[start, end),
 * or none when it is malformed: its length must fill the extension exactly,
 * and every name is 1..255 bytes and fits.
 */
function protocolNames(b: Buffer, start: number, end: number): readonly string[] {
  if (end - start < 2 || start + 2 + b.readUInt16BE(start) !== end) return NO_ALPN;
  const names: string[] = [];
  let p = start + 2;
  while (p < end) {
    const len = b[p]!;
    p += 1;
    if (len === 0 || p + len > end) return NO_ALPN;
    names.push(b.toString('latin1', p, p + len));
    p += len;
  }
  return names.length === 0 ? NO_ALPN : names;
}
