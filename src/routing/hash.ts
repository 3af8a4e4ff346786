/**
 * The ring's hash: MD5 (node:crypto), read as big-endian 32-bit words, as
 * libketama and nginx do. One digest gives four ring points; a key uses the
 * first word. MD5 is used for its distribution, not for security.
 */
import { hash as digest } from 'node:crypto';

/** A key's position on the ring, 0 .. 2^32-1. */
export function hashKey(key: string): number {
  return digest('md5', key, 'buffer').readUInt32BE(0);
}

/** The `count` ring points of one backend, derived from its name only. */
export function backendPoints(name: string, count: number, out: Uint32Array, at: number): void {
  let n = 0;
  for (let block = 0; n < count; block++) {
    const d = digest('md5', `${name}#${block}`, 'buffer');
    for (let w = 0; w < 4 && n < count; w++, n++) out[at + n] = d.readUInt32BE(w * 4);
  }
}
