/**
 * Read the server name from a TLS ClientHello without terminating TLS.
 * Pure and bounded: the hello may span TCP segments and several TLS
 * records; handshake bytes past `MAX_HELLO` make it `too-large`. The caller
 * keeps every byte and replays it to the backend unchanged.
 */

/** ClientHellos larger than this fall back to the fallback key (SPEC §1). */
export const MAX_HELLO = 64 * 1024;
const RECORD_HEADER = 5;
const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;

export type SniResult =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'name'; readonly name: string }
  /** A complete ClientHello without a (usable) host_name. */
  | { readonly kind: 'none' }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'too-large' };

const NEED_MORE: SniResult = { kind: 'need-more' };
const NOT_TLS: SniResult = { kind: 'not-tls' };

/** Look at everything received so far (from the first byte of the connection). */
export function parseSni(buf: Buffer): SniResult {
  // Gather the handshake layer from consecutive handshake records.
  const parts: Buffer[] = [];
  let have = 0;
  let want = -1; // the ClientHello's length incl. its 4-byte handshake header, once known
  let off = 0;
  while (want < 0 || have < want) {
    if (buf.length - off < RECORD_HEADER) {
      if (off === 0 && !plausiblePrefix(buf)) return NOT_TLS;
      return NEED_MORE;
    }
    if (buf[off] !== HANDSHAKE || buf[off + 1] !== 3) return off === 0 ? NOT_TLS : { kind: 'none' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return off === 0 ? NOT_TLS : { kind: 'none' };
    if (buf.length - off - RECORD_HEADER < len) {
      // A partial record: enough to know the hello's size?
      if (want < 0 && have + (buf.length - off - RECORD_HEADER) >= 4) {
        const head = Buffer.concat([...parts, buf.subarray(off + RECORD_HEADER)]);
        if (head[0] !== CLIENT_HELLO) return NOT_TLS;
        if (4 + head.readUIntBE(1, 3) > MAX_HELLO) return { kind: 'too-large' };
      }
      return NEED_MORE;
    }
    const frag = buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + len);
    parts.push(frag);
    have += len;
    off += RECORD_HEADER + len;
    if (want < 0 && have >= 4) {
      const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (head[0] !== CLIENT_HELLO) return NOT_TLS;
      want = 4 + head.readUIntBE(1, 3);
      if (want > MAX_HELLO) return { kind: 'too-large' };
    }
  }
  const hello = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return helloServerName(hello.subarray(4, want));
}

/** The first bytes of a TLS handshake record: 0x16 0x03 ... */
function plausiblePrefix(buf: Buffer): boolean {
  if (buf.length >= 1 && buf[0] !== HANDSHAKE) return false;
  if (buf.length >= 2 && buf[1] !== 3) return false;
  return true;
}

/** The body of a ClientHello (after the handshake header). */
function helloServerName(b: Buffer): SniResult {
  const none: SniResult = { kind: 'none' };
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return none;
  p += 1 + b[p]!; // session id
  if (p + 2 > b.length) return none;
  p += 2 + b.readUInt16BE(p); // cipher suites
  if (p + 1 > b.length) return none;
  p += 1 + b[p]!; // compression methods
  if (p + 2 > b.length) return none;
  const extEnd = Math.min(b.length, p + 2 + b.readUInt16BE(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return none;
    if (type === EXT_SERVER_NAME) return serverNameList(b.subarray(p, p + len));
    p += len;
  }
  return none;
}

function serverNameList(ext: Buffer): SniResult {
  if (ext.length < 2) return { kind: 'none' };
  const end = Math.min(ext.length, 2 + ext.readUInt16BE(0));
  let p = 2;
  while (p + 3 <= end) {
    const type = ext[p]!;
    const len = ext.readUInt16BE(p + 1);
    p += 3;
    if (p + len > end) break;
    if (type === 0) {
      const name = ext.toString('latin1', p, p + len);
      // A DNS name: letters, digits, hyphen, underscore, dots; anything else is not a usable key.
      if (len > 0 && len <= 255 && /^[A-Za-z0-9._-]+$/.test(name)) return { kind: 'name', name };
      return { kind: 'none' };
    }
    p += len;
  }
  return { kind: 'none' };
}
