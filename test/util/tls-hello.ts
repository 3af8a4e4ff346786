/**
 * Shared pieces of the ClientHello parser tests (not a test file itself):
 * capturing the exact records node:tls sends first, pulling the handshake
 * bytes out of a run of TLS records, and re-framing them into records of
 * chosen fragment sizes.
 */
import * as net from 'node:net'
import * as tls from 'node:tls'
import type { Test } from 'tap'
import { waitForEvent, withTimeout } from '../helpers'

/** The length of the complete handshake message carried by the records at the start of `buf`, or -1 if not all in yet. */
export function helloEnd(buf: Buffer): number {
  let off = 0
  let hs = Buffer.alloc(0)
  while (off + 5 <= buf.length) {
    const len = buf.readUInt16BE(off + 3)
    if (off + 5 + len > buf.length) return -1
    hs = Buffer.concat([hs, buf.subarray(off + 5, off + 5 + len)])
    off += 5 + len
    if (hs.length >= 4 && hs.length >= 4 + hs.readUIntBE(1, 3)) return off
  }
  return -1
}

/**
 * The exact bytes node:tls sends first (the records holding its ClientHello),
 * captured by a plain TCP server on loopback that then hangs up.
 */
export async function captureHello(t: Test, opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer()
  t.teardown(() => server.close())
  server.listen(0, '127.0.0.1')
  await waitForEvent(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  const got = new Promise<Buffer>((resolve, reject) => {
    server.once('connection', (sock) => {
      let buf = Buffer.alloc(0)
      sock.on('error', () => undefined) // we hang up on the client; its reset is expected
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c])
        const end = helloEnd(buf)
        if (end >= 0) {
          sock.destroy()
          resolve(buf.subarray(0, end))
        }
      })
      sock.on('end', () => reject(new Error(`client ended after ${buf.length} bytes without a full hello`)))
    })
  })
  const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts })
  client.on('error', () => undefined) // the server hangs up mid-handshake on purpose
  try {
    return await withTimeout(got, 5_000, 'the ClientHello')
  } finally {
    client.destroy()
  }
}

/** The handshake bytes carried by a run of TLS records. */
export function handshakeBytes(records: Buffer): Buffer {
  const hs: Buffer[] = []
  let off = 0
  while (off < records.length) {
    const len = records.readUInt16BE(off + 3)
    hs.push(records.subarray(off + 5, off + 5 + len))
    off += 5 + len
  }
  return Buffer.concat(hs)
}

/** Handshake bytes as TLS handshake records of the given fragment sizes; the rest in records of at most 16 KiB. */
export function frame(hs: Buffer, sizes: readonly number[]): Buffer {
  const out: Buffer[] = []
  let p = 0
  for (let i = 0; p < hs.length; i++) {
    const n = Math.min(i < sizes.length ? sizes[i]! : 16384, hs.length - p)
    const head = Buffer.from([0x16, 3, 1, 0, 0])
    head.writeUInt16BE(n, 3)
    out.push(head, hs.subarray(p, p + n))
    p += n
  }
  return Buffer.concat(out)
}
