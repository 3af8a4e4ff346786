/**
 * The relay (SPEC §1 step 7): bytes flow both ways unchanged, with
 * backpressure; half-close is honoured in both directions; `timeouts.idle`
 * closes a silent pair; a backend that does not read does not make l4lb
 * buffer without bound.
 */
import { createHash, randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import t from 'tap'
import {
  readAll,
  readGreeting,
  readLine,
  startBackend,
  startNamedBackend,
  waitForEvent,
  withTimeout,
  connectFrom,
} from '../helpers'
import { closedLine, elapse, entries, oneFrontend, sha256, startLb } from '../util/integration'

const MiB = 1024 * 1024

/** A client socket from `localAddress` that keeps its write side open after the peer's FIN. */
async function connectHalfOpen(port: number, localAddress: string): Promise<net.Socket> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true })
  await waitForEvent(sock, 'connect', 5_000, `connect to 127.0.0.1:${port}`)
  return sock
}

t.test('20 parallel connections move 8 MiB each way, byte for byte', async t => {
  const SIZE = 8 * MiB
  const N = 20
  // The backend sends its own 8 MiB at once and records, per connection,
  // the sha256 of what it received → the sha256 of what it sent.
  const replies = new Map<string, string>()
  let allRecorded!: () => void
  const recorded = new Promise<void>(resolve => (allRecorded = resolve))
  const backend = await startBackend(t, 'sink', socket => {
    const reply = randomBytes(SIZE)
    const h = createHash('sha256')
    socket.on('data', (c: Buffer) => h.update(c))
    socket.on('end', () => {
      replies.set(h.digest('hex'), sha256(reply))
      if (replies.size === N) allRecorded()
    })
    socket.end(reply)
  })
  const { lb, port } = await startLb(t, oneFrontend(entries([backend])))
  const since = lb.mark()
  const results = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const client = `127.0.10.${i + 1}`
      const payload = randomBytes(SIZE)
      const sock = await connectFrom(port, client)
      t.teardown(() => sock.destroy())
      const got = readAll(sock, 60_000)
      sock.end(payload)
      const data = await got
      return { client, sent: sha256(payload), received: sha256(data), length: data.length }
    }),
  )
  // The client may have read the whole reply before the backend has read the whole request.
  await withTimeout(recorded, 30_000, `the backend to receive all ${N} requests`)
  for (const r of results) {
    t.equal(r.length, SIZE, `${r.client}: received ${SIZE} bytes`)
    t.ok(replies.has(r.sent), `${r.client}: the backend received exactly the 8 MiB sent (sha256 ${r.sent.slice(0, 12)})`)
    t.equal(r.received, replies.get(r.sent), `${r.client}: the client received exactly the backend's 8 MiB`)
    const line = await closedLine(lb, r.client, since)
    t.match(line, { bytes_in: SIZE, bytes_out: SIZE, backend: 'sink' }, `${r.client}: close record counts 8 MiB each way`)
  }
  t.equal(backend.connections, N, `the backend saw ${N} connections`)
})

t.test('half-close: the client ends, the backend still answers in full', async t => {
  // Collects until the client's FIN, then answers with a count and a hash, then ends.
  const backend = await startBackend(t, 'judge', socket => {
    const h = createHash('sha256')
    let n = 0
    socket.on('data', (c: Buffer) => {
      h.update(c)
      n += c.length
    })
    socket.on('end', () => socket.end(`${n} ${h.digest('hex')}\n`))
  })
  const { lb, port } = await startLb(t, oneFrontend(entries([backend])))
  const since = lb.mark()
  const payload = randomBytes(3 * MiB + 17)
  const sock = await connectFrom(port, '127.0.10.50')
  t.teardown(() => sock.destroy())
  const got = readAll(sock, 20_000)
  sock.end(payload)
  const reply = `${payload.length} ${sha256(payload)}\n`
  t.equal((await got).toString(), reply, 'the reply written after the FIN arrived whole')
  const line = await closedLine(lb, '127.0.10.50', since)
  t.match(
    line,
    { reason: 'client_closed', bytes_in: payload.length, bytes_out: reply.length },
    'logged as client_closed with both byte counts',
  )
})

t.test('half-close: the backend ends first, the client keeps sending', async t => {
  let received: Promise<Buffer> | undefined
  const backend = await startBackend(t, 'early-fin', socket => {
    socket.end('bye\n') // FIN right away; keep reading
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    received = new Promise(resolve => socket.on('end', () => resolve(Buffer.concat(chunks))))
  })
  const { port } = await startLb(t, oneFrontend(entries([backend])))
  const sock = await connectHalfOpen(port, '127.0.10.51')
  t.teardown(() => sock.destroy())
  t.equal(await readLine(sock), 'bye', 'the backend said bye')
  if (!sock.readableEnded) await waitForEvent(sock, 'end', 5_000, 'the backend FIN relayed to the client')
  t.ok(sock.readableEnded, 'the client saw the FIN')
  const payload = randomBytes(MiB)
  sock.end(payload)
  const got = await withTimeout(received!, 10_000, 'the backend to receive the client data')
  t.equal(sha256(got), sha256(payload), 'bytes sent after the backend FIN still reached it, whole')
})

t.test('timeouts.idle closes a silent pair, not a talking one', async t => {
  const backend = await startNamedBackend(t, 'b1')
  const { lb, port } = await startLb(t, oneFrontend(entries([backend]), { timeouts: { idle: '1s' } }))

  // A talking client: a round trip every 250ms for two seconds outlives the 1s idle timeout.
  const talker = await connectFrom(port, '127.0.10.60')
  t.teardown(() => talker.destroy())
  t.equal(await readGreeting(talker), 'b1', 'the talker reached b1')
  for (let k = 0; k < 8; k++) {
    await elapse(250) // the pause between messages is what is under test
    talker.write(`ping ${k}\n`)
    t.equal(await readLine(talker), `ping ${k}`, `round trip ${k + 1} after a 250ms pause`)
  }
  t.notOk(talker.destroyed || talker.readableEnded, 'the talking connection is still open')

  // A silent client is closed, and the log says why.
  const since = lb.mark()
  const silent = await connectFrom(port, '127.0.10.61')
  t.teardown(() => silent.destroy())
  t.equal(await readGreeting(silent), 'b1', 'the silent client reached b1')
  const closed = new Promise<void>(resolve => silent.once('close', () => resolve()))
  silent.on('error', () => undefined) // a reset is one way to be closed
  silent.resume()
  await withTimeout(closed, 5_000, 'l4lb to close the silent connection')
  const line = await closedLine(lb, '127.0.10.61', since)
  t.equal(line.reason, 'idle_timeout', 'reason idle_timeout')
  t.ok(Number(line.duration_ms) >= 990, `not before the timeout (duration_ms ${String(line.duration_ms)})`)
  talker.end()
})

function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

t.test('a backend that does not read: l4lb pushes back instead of buffering', async t => {
  if (!fs.existsSync('/proc/self/status')) {
    t.pass('no /proc here', { skip: 'needs /proc to read RSS' })
    return
  }
  const LIMIT = 200 * MiB
  const CHUNK = MiB
  let sink: net.Socket | undefined
  const backend = await startBackend(t, 'sleeper', socket => {
    socket.pause() // never reads (until told to below)
    sink = socket
  })
  const { lb, port } = await startLb(t, oneFrontend(entries([backend])))
  const sock = await connectFrom(port, '127.0.10.70')
  t.teardown(() => sock.destroy())
  await backend.waitForConnections(1)
  const baseline = rssBytes(lb.pid)
  let peak = baseline
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(lb.pid))), 20)
  t.teardown(() => clearInterval(sampler))

  const chunk = randomBytes(CHUNK)
  let sent = 0
  let stalled = false
  while (sent < LIMIT) {
    sent += CHUNK
    if (sock.write(chunk)) continue
    try {
      await waitForEvent(sock, 'drain', 1_000, 'drain')
    } catch {
      stalled = true // nothing moved for a second: the whole path pushes back
      break
    }
  }
  peak = Math.max(peak, rssBytes(lb.pid))
  clearInterval(sampler)
  t.ok(stalled, `the client was stopped by backpressure after ${(sent / MiB).toFixed(0)} MiB, short of 200 MiB`)
  t.ok(
    peak < baseline + 64 * MiB,
    `l4lb RSS stayed bounded: peak ${(peak / MiB).toFixed(1)} MiB vs baseline ${(baseline / MiB).toFixed(1)} MiB (limit +64 MiB)`,
  )

  // The backend starts reading: every byte written arrives, nothing was dropped.
  let got = 0
  const done = new Promise<void>(resolve => {
    sink!.on('data', (c: Buffer) => (got += c.length))
    sink!.on('end', () => resolve())
  })
  sink!.resume()
  sock.end()
  await withTimeout(done, 30_000, 'the backend to read everything')
  t.equal(got, sent, `the backend received all ${sent} bytes once it read`)
})
