/**
 * Read the server name from a TLS ClientHello without terminating TLS.
 * Pure and bounded: the hello may span TCP segments and several TLS
 * records; handshake bytes past `MAX_HELLO` make it `too-large`. The caller
 * keeps every byte and replays it to the backend unchanged. The gathering
 * and parsing live in hello.ts, shared with the ALPN that routes read.
 */
import { MAX_HELLO, parseClientHello } from './hello.js';

export { MAX_HELLO };

export type SniResult =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'name'; readonly name: string }
  /** A complete ClientHello without a (usable) host_name. */
  | { readonly kind: 'none' }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'too-large' };

const NONE: SniResult = Object.freeze({ kind: 'none' });

/** Look at everything received so far (from the first byte of the connection). */
export function parseSni(buf: Buffer): SniResult {
  const hello = parseClientHello(buf);
  if (hello.kind !== 'hello') return hello;
  return hello.name === null ? NONE : { kind: 'name', name: hello.name };
}
