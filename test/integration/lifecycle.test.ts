/**
 * Reload and stop (SPEC §2, §8): SIGHUP validates first and keeps the
 * running config on a bad file; removing a backend moves only its clients;
 * listen addresses can be added and removed. SIGTERM/SIGINT stop accepting,
 * let open connections finish for up to shutdown_grace, then exit 0.
 */
import * as net from 'node:net'
import t from 'tap'
import {
  connectFrom,
  readGreeting,
  readLine,
  request,
  startNamedBackend,
  withTimeout,
  writeConfig,
  type Backend,
  type TestLike,
} from '../helpers'
import { closedLine, drainUntilClose, entries, explain, mapLimit, oneFrontend, startLb } from '../util/integration'

/**
 * Resolves once a connect to `host:port` is refused. The "stopping" line is
 * written just before the listener closes, so a connect racing it may still
 * land in the accept queue: such a connection is reset when the listener
 * closes, and the next attempt is refused. Bounded to 20 attempts.
 */
async function refusedSoon(port: number, localAddress: string, host = '127.0.0.1'): Promise<string> {
  for (let attempt = 1; attempt <= 20; attempt++) {
    const sock = net.connect({ port, host, localAddress })
    const outcome = await withTimeout(
      new Promise<string>(resolve => {
        sock.once('error', err => resolve((err as NodeJS.ErrnoException).code ?? err.message))
        sock.once('close', () => resolve('closed'))
      }),
      5_000,
      `a connection to ${host}:${port} to be refused or closed`,
    ).finally(() => sock.destroy())
    if (outcome === 'ECONNREFUSED') return outcome
  }
  throw new Error(`${host}:${port} still accepted connections after 20 attempts`)
}

async function threeBackends(t: TestLike): Promise<Backend[]> {
  return Promise.all(['a', 'b', 'c'].map(n => startNamedBackend(t, n)))
}

t.test('SIGHUP with a broken file: reload failed, the old config keeps serving', async t => {
  const backends = await threeBackends(t)
  const { lb, port, file } = await startLb(t, oneFrontend(entries(backends)))
  const clients = Array.from({ length: 10 }, (_, i) => `127.0.19.${i + 1}`)
  const before = await mapLimit(clients, 5, c => request(port, c))

  const since = lb.mark()
  writeConfig(t, 'frontends:\n  - name: fe\n    listen: 127.0.0.1:0\n    backends: []\n    colour: blue\n', { path: file })
  lb.kill('SIGHUP')
  const failed = await lb.waitForMsg('reload failed', {}, { since })
  const errors = failed.errors as string[]
  t.ok(Array.isArray(errors) && errors.length >= 2, `the log lists the errors: ${JSON.stringify(errors)}`)
  t.ok(errors.some(e => e.startsWith('frontends[0].colour: ')), 'with their paths')
  t.notOk(lb.lines.slice(since).some(l => l.msg === 'reloaded'), 'no "reloaded" line')

  const after = await mapLimit(clients, 5, c => request(port, c))
  t.same(after, before, 'every client still reaches its backend')
  t.match(await request(port, '127.0.19.99'), /^[abc]$/, 'a new client is served')
  t.equal(lb.exit, null, 'still running')
})

t.test('SIGHUP removing one of three backends moves only its clients', async t => {
  const backends = await threeBackends(t)
  const { lb, port, file } = await startLb(t, oneFrontend(entries(backends)))
  const clients = Array.from({ length: 30 }, (_, i) => `127.0.20.${i + 1}`)
  const before = await mapLimit(clients, 8, c => request(port, c))
  const onC = clients.filter((_, i) => before[i] === 'c')
  t.ok(onC.length > 0 && onC.length < 30, `${onC.length} of 30 clients on c`)

  const since = lb.mark()
  writeConfig(t, oneFrontend(entries(backends.filter(b => b.name !== 'c'))), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const cBefore = backends[2]!.connections

  const after = await mapLimit(clients, 8, c => request(port, c))
  // A moved client goes where the new ring puts it (explain reads the reloaded file).
  const placed = new Map(await mapLimit(onC, 4, async c => [c, (await explain(file, c)).backend] as const))
  clients.forEach((c, i) => {
    if (before[i] === 'c') t.equal(after[i], placed.get(c), `${c} moved from c to ${String(placed.get(c))}, its place on the new ring`)
    else t.equal(after[i], before[i], `${c} kept ${before[i]}`)
  })
  t.equal(backends[2]!.connections, cBefore, 'the removed backend gets no new connections')
})

t.test('SIGHUP adding and removing listen addresses', async t => {
  const backends = await threeBackends(t)
  const fe = (listen: string[]): Record<string, unknown> => oneFrontend(entries(backends), { listen })
  const { lb, port, file } = await startLb(t, fe(['127.0.0.1:0']))
  const name = await request(port, '127.0.21.1')

  // Add 127.0.0.2:0.
  let since = lb.mark()
  writeConfig(t, fe(['127.0.0.1:0', '127.0.0.2:0']), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const added = await lb.waitForMsg('listening', { address: '127.0.0.2' }, { since })
  const newPort = Number(added.port)
  t.equal(await request(newPort, '127.0.21.1', { host: '127.0.0.2' }), name, 'the new address serves, with the same persistence')
  t.equal(await request(port, '127.0.21.1'), name, 'the old address still serves')

  // Remove 127.0.0.1:0 while a connection through it is open.
  const held = await connectFrom(port, '127.0.21.2')
  t.teardown(() => held.destroy())
  const heldOn = await readGreeting(held)
  since = lb.mark()
  writeConfig(t, fe(['127.0.0.2:0']), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  t.equal(await refusedSoon(port, '127.0.21.3'), 'ECONNREFUSED', 'the removed address refuses new connections')
  held.write('still here\n')
  t.equal(await readLine(held), 'still here', `the open connection through it carries on (${heldOn})`)
  t.equal(await request(newPort, '127.0.21.1', { host: '127.0.0.2' }), name, 'the kept address serves, persistence intact')
})

t.test('SIGTERM: stops accepting, an open connection finishes, exit 0', async t => {
  const backends = await threeBackends(t)
  const { lb, port } = await startLb(t, oneFrontend(entries(backends), {}, { shutdown_grace: '30s' }))
  const client = '127.0.22.1'
  const sock = await connectFrom(port, client)
  t.teardown(() => sock.destroy())
  const on = await readGreeting(sock)

  const since = lb.mark()
  lb.kill('SIGTERM')
  await lb.waitForMsg('stopping', {}, { since })
  t.equal(await refusedSoon(port, '127.0.22.2'), 'ECONNREFUSED', 'new connections are refused')
  for (let k = 0; k < 3; k++) {
    sock.write(`after SIGTERM ${k}\n`)
    t.equal(await readLine(sock), `after SIGTERM ${k}`, `relayed after SIGTERM (${k + 1}) on ${on}`)
  }
  t.equal(lb.exit, null, 'still running while the connection is open')
  const done = drainUntilClose(sock)
  sock.end()
  await done
  const exit = await withTimeout(lb.exited, 5_000, 'l4lb to exit once the connection closed (well before the 30s grace)')
  t.same(exit, { code: 0, signal: null }, 'exit code 0')
  const line = await closedLine(lb, client, since)
  t.equal(line.reason, 'client_closed', 'the connection finished on its own (client_closed)')
  t.equal(line.backend, on, 'on its backend')
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} with shutdown_grace 500ms and a connection held open: closed with reason shutdown, exit 0`, async t => {
    const backends = await threeBackends(t)
    const { lb, port } = await startLb(t, oneFrontend(entries(backends), {}, { shutdown_grace: '500ms' }))
    const client = '127.0.22.10'
    const sock = await connectFrom(port, client)
    t.teardown(() => sock.destroy())
    const on = await readGreeting(sock)
    const closed = drainUntilClose(sock)
    const since = lb.mark()
    const started = Date.now()
    lb.kill(signal)
    const exit = await withTimeout(lb.exited, 10_000, `l4lb to exit after ${signal}`)
    const took = Date.now() - started
    t.same(exit, { code: 0, signal: null }, 'exit code 0')
    t.ok(took >= 450, `waited for the grace period (${took}ms)`)
    const line = await closedLine(lb, client, since)
    t.equal(line.reason, 'shutdown', 'the held connection is logged with reason shutdown')
    t.equal(line.backend, on, 'on its backend')
    await closed
    t.ok(sock.destroyed || sock.readableEnded, 'the client was disconnected')
  })
}
