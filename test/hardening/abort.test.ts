/**
 * Abort propagation (issue 11, SPEC §14–15): a failure on one side of a
 * relayed pair reaches the other side as a failure, not as a clean end.
 *
 * - A backend that resets mid-answer makes l4lb reset the client, so a
 *   protocol that reads until EOF can tell the answer was cut (a direct
 *   client sees ECONNRESET: that is the baseline l4lb must match). Logged
 *   `backend_error`, also when the client had half-closed first.
 * - A client that resets mid-upload makes l4lb reset the backend, so the
 *   backend cannot take a cut request for a whole one. Logged `client_error`.
 * - A backend's normal FIN still reaches the client as a clean end, with
 *   every byte (no regression).
 */
import * as net from 'node:net'
import t from 'tap'
import { connectFrom, startBackend, waitForEvent, withTimeout, type Backend, type TestLike } from '../helpers'
import { closedLine, drainUntilClose, entries, oneFrontend, startLb } from '../util/integration'

const KiB = 1024
const MiB = 1024 * KiB
/** What the backend promises to send. */
const PROMISED = MiB
/** What it sends before it resets. */
const SENT_BEFORE_RESET = 100 * KiB

/**
 * A backend that answers each request with the first 100 KiB of a promised
 * 1 MiB, then resets the connection once those bytes are in the kernel.
 * `after: 'request'` answers on the first bytes of the request;
 * `after: 'end'` answers once the client has half-closed.
 */
function startResettingBackend(t: TestLike, name: string, after: 'request' | 'end'): Promise<Backend> {
  return startBackend(t, name, socket => {
    let answered = false
    const answer = (): void => {
      if (answered) return
      answered = true
      socket.write(Buffer.alloc(SENT_BEFORE_RESET, 0x61), () => {
        // Written to the kernel: let it cross loopback, then abort instead of finishing the 1 MiB.
        setTimeout(() => {
          if (!socket.destroyed) socket.resetAndDestroy()
        }, 50)
      })
    }
    if (after === 'request') socket.once('data', answer)
    else {
      socket.resume() // read the request, answer at its end
      socket.once('end', answer)
    }
  })
}

/** Connect (direct or through l4lb), send a request, half-close if asked, and read until the connection closes. */
async function fetchReply(
  port: number,
  client: string,
  halfClose: boolean,
): Promise<{ data: Buffer; ended: boolean; error: string | null }> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: client, allowHalfOpen: true })
  const outcome = drainUntilClose(sock, 10_000)
  sock.on('end', () => sock.end()) // after the peer's FIN, close our side too (allowHalfOpen keeps it open otherwise)
  await waitForEvent(sock, 'connect', 5_000, `connect to 127.0.0.1:${port} from ${client}`).catch(err => {
    sock.destroy()
    throw err
  })
  if (halfClose) sock.end('GET /big\n')
  else sock.write('GET /big\n')
  try {
    return await outcome
  } finally {
    sock.destroy()
  }
}

for (const halfClose of [false, true]) {
  const how = halfClose ? 'after the client half-closed' : 'while the client is still open'
  t.test(`backend resets mid-answer ${how}: the client is reset too, logged backend_error`, async t => {
    const backend = await startResettingBackend(t, 'cut', halfClose ? 'end' : 'request')

    // Baseline: a direct client sees the reset.
    const direct = await fetchReply(backend.port, '127.0.31.1', halfClose)
    t.equal(direct.error, 'ECONNRESET', 'baseline: a direct client gets ECONNRESET')
    t.ok(direct.data.length < PROMISED, `baseline: a direct client got fewer than 1 MiB (${direct.data.length} bytes)`)

    const { lb, port } = await startLb(t, oneFrontend(entries([backend])))
    const client = halfClose ? '127.0.31.3' : '127.0.31.2'
    const since = lb.mark()
    const via = await fetchReply(port, client, halfClose)
    t.equal(via.error, 'ECONNRESET', 'through l4lb: the client gets ECONNRESET, not a clean FIN')
    t.notOk(via.ended, 'through l4lb: no FIN before the reset')
    t.ok(via.data.length < PROMISED, `through l4lb: fewer than 1 MiB arrived (${via.data.length} bytes)`)
    t.comment(`backend reset mid-answer ${how}: direct client got ${direct.data.length} bytes + ${direct.error}, via l4lb ${via.data.length} bytes + ${via.error}`)

    const line = await closedLine(lb, client, since)
    t.match(line, { reason: 'backend_error', backend: 'cut' }, 'logged "connection closed" with reason backend_error')
    t.ok(typeof line.bytes_out === 'number' && line.bytes_out < PROMISED, `bytes_out ${String(line.bytes_out)} < 1 MiB`)
    t.ok(typeof line.bytes_in === 'number' && line.bytes_in === 'GET /big\n'.length, `bytes_in counts the request (${String(line.bytes_in)})`)
  })
}

t.test('client resets mid-upload: the backend is reset too, logged client_error', async t => {
  let resolveOutcome!: (o: { received: number; ended: boolean; error: string | null }) => void
  const backendOutcome = new Promise<{ received: number; ended: boolean; error: string | null }>(r => (resolveOutcome = r))
  let firstBytes!: () => void
  const gotBytes = new Promise<void>(r => (firstBytes = r))
  const backend = await startBackend(t, 'sink', socket => {
    let received = 0
    let ended = false
    let error: string | null = null
    socket.on('data', (c: Buffer) => {
      received += c.length
      firstBytes()
    })
    socket.on('end', () => (ended = true))
    socket.on('error', err => (error = (err as NodeJS.ErrnoException).code ?? err.message))
    socket.on('close', () => resolveOutcome({ received, ended, error }))
  })
  const { lb, port } = await startLb(t, oneFrontend(entries([backend])))
  const client = '127.0.31.4'
  const since = lb.mark()
  const sock = await connectFrom(port, client)
  t.teardown(() => sock.destroy())
  sock.on('error', () => undefined) // our own reset
  // The first part of an upload that would be 1 MiB.
  sock.write(Buffer.alloc(64 * KiB, 0x62))
  await withTimeout(gotBytes, 5_000, 'the backend to receive the first bytes of the upload')
  sock.resetAndDestroy()

  const o = await withTimeout(backendOutcome, 10_000, "the backend's socket to close")
  t.equal(o.error, 'ECONNRESET', "the backend's socket gets an 'error' ECONNRESET")
  t.notOk(o.ended, "the backend's socket never sees a clean 'end'")
  t.ok(o.received > 0 && o.received < MiB, `the backend got part of the upload (${o.received} bytes)`)
  const line = await closedLine(lb, client, since)
  t.match(line, { reason: 'client_error', backend: 'sink' }, 'logged "connection closed" with reason client_error')
})

t.test("a backend's normal FIN still gives the client a clean end with every byte", async t => {
  const reply = Buffer.alloc(PROMISED, 0x63)
  const backend = await startBackend(t, 'whole', socket => {
    socket.once('data', () => socket.end(reply))
    socket.resume()
  })
  const { lb, port } = await startLb(t, oneFrontend(entries([backend])))
  for (const halfClose of [false, true]) {
    const client = halfClose ? '127.0.31.6' : '127.0.31.5'
    const since = lb.mark()
    const got = await fetchReply(port, client, halfClose)
    const how = halfClose ? 'half-closed client' : 'open client'
    t.equal(got.error, null, `${how}: no error`)
    t.ok(got.ended, `${how}: a clean FIN`)
    t.equal(got.data.length, PROMISED, `${how}: all ${PROMISED} bytes arrived`)
    t.ok(got.data.equals(reply), `${how}: the bytes are the backend's`)
    const line = await closedLine(lb, client, since)
    t.match(line, { backend: 'whole', bytes_out: PROMISED }, `${how}: close record counts 1 MiB out`)
    // The open client saw the backend's FIN first; the half-closed one had sent its own FIN before.
    const reason = halfClose ? 'client_closed' : 'backend_closed'
    t.equal(line.reason, reason, `${how}: logged ${reason}, not an error`)
  }
})
