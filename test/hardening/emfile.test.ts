/**
 * Out of file descriptors (issue 11, SPEC §14–15): l4lb's own EMFILE never
 * counts against a backend, every client it cannot serve is accounted for
 * (one `out of file descriptors` line per episode and a count of episodes,
 * and its own `connection closed` line when l4lb saw the connection), and once descriptors free up the next client
 * is served at once.
 *
 * l4lb runs under `ulimit -n` with two healthy greeting backends (passive
 * checks only, max_fails 3, fail_timeout 30s: a backend wrongly marked down
 * would stay down for the whole test) and an admin listener; 150 clients
 * from distinct addresses hold their connections open. Each pair takes two
 * descriptors, so which call runs out first depends on the parity of what
 * l4lb holds at rest: with one limit the accept of a new client fails, with
 * the next the connect to its backend does. Both limits are run, so both
 * paths are covered whatever l4lb's idle descriptor count is.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import t from 'tap'
import {
  adminRequest,
  L4LB_BIN,
  spawnLogged,
  startNamedBackend,
  withTimeout,
  writeConfig,
  type LogLine,
  type TestLike,
} from '../helpers'
import { elapse, entries, oneFrontend } from '../util/integration'

const CLIENTS = 150
/** How long a held client waits for its greeting (or its close) before it counts as not served. */
const OUTCOME_MS = 3_000
/** The bound on "served again after the fds freed" (the issue's target is 1 s; this is the generous limit). */
const RECOVERY_MS = 5_000

type Outcome = 'served' | 'closed' | 'reset' | 'connect_error' | 'pending'

interface HeldClient {
  address: string
  socket: net.Socket
  outcome: Outcome
  /** The backend named in the greeting. */
  backend: string | null
  closed: Promise<void>
}

/** Connects from `address` and keeps the connection open; resolves once it got its greeting, was closed, or OUTCOME_MS passed. */
function holdClient(t: TestLike, port: number, address: string): Promise<HeldClient> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: address })
  t.teardown(() => socket.destroy())
  const c: HeldClient = {
    address,
    socket,
    outcome: 'pending',
    backend: null,
    closed: new Promise(resolve => socket.once('close', () => resolve())),
  }
  return new Promise(resolve => {
    let buf = ''
    let connected = false
    const settle = (o: Outcome): void => {
      if (c.outcome !== 'pending') return
      c.outcome = o
      clearTimeout(timer)
      resolve(c)
    }
    const timer = setTimeout(() => {
      clearTimeout(timer)
      resolve(c) // still 'pending': connected, nothing came
    }, OUTCOME_MS)
    socket.on('connect', () => (connected = true))
    socket.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8')
      const nl = buf.indexOf('\n')
      if (nl >= 0 && c.outcome === 'pending') {
        c.backend = buf.slice(0, nl)
        settle('served')
      }
    })
    socket.on('error', err => settle(connected ? ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? 'reset' : 'closed') : 'connect_error'))
    socket.on('end', () => settle('closed'))
    socket.on('close', () => settle(connected ? 'closed' : 'connect_error'))
  })
}

/** One short client: served if its greeting arrives within `ms`. */
async function tryOnce(port: number, address: string, ms: number): Promise<string | null> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: address })
  try {
    return await withTimeout(
      new Promise<string | null>(resolve => {
        let buf = ''
        socket.on('data', (chunk: Buffer) => {
          buf += chunk.toString('utf8')
          const nl = buf.indexOf('\n')
          if (nl >= 0) resolve(buf.slice(0, nl))
        })
        socket.on('error', () => resolve(null))
        socket.on('close', () => resolve(null))
      }),
      ms,
      `a greeting for ${address}`,
    ).catch(() => null)
  } finally {
    socket.destroy()
  }
}

/** Open descriptors of `pid` (may include one inherited above the limit, e.g. the test runner's IPC pipe). */
function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length
}

interface StatusBackend {
  name: string
  state: string
  connect_failures: number
}
interface StatusFrontend {
  name: string
  accept_errors: number
  connect_failed: number
  no_backend: number
  backends: StatusBackend[]
}

function countBy<T>(items: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of items) out[key(x)] = (out[key(x)] ?? 0) + 1
  return out
}

for (const limit of [96, 97]) {
  t.test(`ulimit -n ${limit}: ${CLIENTS} held clients exhaust l4lb's fds; no backend is blamed, and it recovers`, async t => {
    const a = await startNamedBackend(t, 'a')
    const b = await startNamedBackend(t, 'b')
    const file = writeConfig(
      t,
      oneFrontend(
        entries([a, b]),
        { passive: { max_fails: 3, fail_timeout: '30s' } },
        // debug: the `connect failed` lines say why each backend connect failed (`why: local` for EMFILE)
        { admin: { listen: '127.0.0.1:0' }, log: { level: 'debug' } },
      ),
    )
    const lb = spawnLogged(t, 'bash', ['-c', `ulimit -n ${limit} && exec "${process.execPath}" "${L4LB_BIN}" run -c "${file}"`])
    const port = Number((await lb.waitForMsg('listening', { frontend: 'fe' })).port)
    const adminPort = Number((await lb.waitForMsg('admin listening')).port)
    // Healthy to start with, and an admin listener that answers.
    const before = (await adminRequest(adminPort, 'GET', '/status')).json() as { frontends: StatusFrontend[] }
    t.same(before.frontends[0]!.backends.map(x => x.state), ['up', 'up'], 'both backends up before the flood')
    const fdsAtRest = fdCount(lb.pid)
    const since = lb.mark()

    // ------------------------------------------------ the flood: held clients
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => holdClient(t, port, `127.0.50.${i + 1}`)),
    )
    const fdsFull = fdCount(lb.pid)
    const outcomes = countBy(clients, c => c.outcome)
    const served = clients.filter(c => c.outcome === 'served')
    const unserved = clients.filter(c => c.outcome !== 'served')
    t.comment(`ulimit -n ${limit}: l4lb holds ${fdsAtRest} fds at rest, ${fdsFull} with the clients held; client outcomes ${JSON.stringify(outcomes)}`)
    t.ok(served.length > 0, `some clients were served (${served.length})`)
    t.ok(unserved.length > 0, `the fd limit really bit: ${unserved.length} of ${CLIENTS} clients were not served`)

    // Each unserved client: did l4lb log a `connection closed` for it?
    const during = lb.lines.slice(since)
    const closedOf = new Map<string, LogLine>()
    for (const l of during) if (l.msg === 'connection closed' && typeof l.client === 'string') closedOf.set(l.client, l)
    const withLine = unserved.filter(c => closedOf.has(c.address))
    const silent = unserved.filter(c => !closedOf.has(c.address))
    const reasons = countBy(withLine, c => String(closedOf.get(c.address)!.reason))
    t.comment(`unserved clients: ${withLine.length} with a "connection closed" line ${JSON.stringify(reasons)}, ${silent.length} with none`)

    // Those l4lb closed itself: connect_failed / no_backend, and every failed backend connect was a local error.
    for (const [reason, n] of Object.entries(reasons)) {
      t.ok(reason === 'connect_failed' || reason === 'no_backend', `${n} unserved clients closed with reason ${reason} (connect_failed or no_backend)`)
    }
    const failedConnects = during.filter(l => l.msg === 'connect failed')
    const whys = countBy(failedConnects, l => String(l.why))
    t.comment(`backend connects that failed: ${JSON.stringify(whys)}`)
    t.same(Object.keys(whys).filter(w => w !== 'local'), [], 'every failed backend connect was a local error (why: local)')
    if (withLine.length > 0) {
      const lines = withLine.map(c => closedOf.get(c.address)!)
      t.ok(
        lines.every(l => l.backend === null && l.bytes_in === 0 && l.bytes_out === 0),
        'each is closed before any byte moved, with no backend (backend null, 0 bytes each way)',
      )
      const withFailures = withLine.filter(c => failedConnects.some(l => l.client === c.address))
      t.equal(withFailures.length, withLine.length, 'each connect_failed client has its local connect failures logged (debug)')
    }

    // Running out is one episode: logged once at error level, whether accepts were dropped or connects failed.
    // (dropped accepts are seen by the once-a-second descriptor count: wait for the line, then count)
    await lb.waitFor(l => typeof l.msg === 'string' && l.msg.startsWith('out of file descriptors'), { since, timeoutMs: 3_000, what: 'the episode line' }).catch(() => null)
    const episode = lb.lines.slice(since).filter(l => typeof l.msg === 'string' && l.msg.startsWith('out of file descriptors'))
    t.comment(`"out of file descriptors" lines: ${episode.length} (silent drops at accept: ${silent.length})`)
    t.equal(episode.length, 1, 'the episode is logged exactly once')
    if (episode[0]) t.equal(episode[0].level, 50, 'at error level')

    // Nobody blamed a backend.
    const downLines = lb.lines.filter(l => l.msg === 'backend down')
    t.comment(`backends marked down: ${downLines.length}`)
    t.same(downLines, [], 'no "backend down" line at all')

    // ------------------------------------------------ the clients leave
    for (const c of clients) c.socket.destroy()
    await withTimeout(Promise.all(clients.map(c => c.closed)), 5_000, 'every held client to close')
    const freed = performance.now()
    let firstServed: number | null = null
    let tries = 0
    while (performance.now() - freed < RECOVERY_MS) {
      tries++
      const name = await tryOnce(port, `127.0.51.${tries % 250 + 1}`, 1_000)
      if (name === 'a' || name === 'b') {
        firstServed = performance.now() - freed
        break
      }
      await elapse(20)
    }
    t.comment(
      `EMFILE episode: first new client served after ${firstServed === null ? `(none within ${RECOVERY_MS})` : Math.round(firstServed)} ms (${tries} tries)`,
    )
    t.not(firstServed, null, `a new client is served within ${RECOVERY_MS} ms after the held clients closed`)

    const again = await lb.waitForMsg('file descriptors available again', {}, { since, timeoutMs: 3_000 }).catch(() => null)
    t.ok(again !== null, '"file descriptors available again" is logged when the episode ends')
    if (again) t.equal(again.level, 40, 'at warn level')

    // /status: both backends up, nothing counted against them; the accept errors counted per frontend.
    const status = (await adminRequest(adminPort, 'GET', '/status')).json() as { fd_exhaustion_episodes: number; frontends: StatusFrontend[] }
    const fe = status.frontends.find(f => f.name === 'fe')!
    t.same(
      fe.backends.map(x => ({ name: x.name, state: x.state, connect_failures: x.connect_failures })),
      [
        { name: 'a', state: 'up', connect_failures: 0 },
        { name: 'b', state: 'up', connect_failures: 0 },
      ],
      '/status: both backends up, no connect failure counted against either',
    )
    const connectFailedLines = lb.lines.slice(since).filter(l => l.msg === 'connection closed' && l.reason === 'connect_failed').length
    t.equal(fe.connect_failed, connectFailedLines, `/status connect_failed counts every connect_failed close (${fe.connect_failed})`)
    t.comment(`/status: fd_exhaustion_episodes ${status.fd_exhaustion_episodes}, connect_failed ${fe.connect_failed}, no_backend ${fe.no_backend}`)
    t.equal(status.fd_exhaustion_episodes, 1, '/status counts the episode')
    const metrics = (await adminRequest(adminPort, 'GET', '/metrics')).text
    const m = /^l4lb_fd_exhaustion_episodes_total (\d+)$/m.exec(metrics)
    t.equal(Number(m?.[1]), 1, '/metrics: l4lb_fd_exhaustion_episodes_total 1')

    // The descriptors come back.
    let fdsAfter = fdCount(lb.pid)
    for (let i = 0; i < 50 && fdsAfter > fdsAtRest; i++) {
      await elapse(100)
      fdsAfter = fdCount(lb.pid)
    }
    t.comment(`fds: ${fdsAtRest} at rest, ${fdsFull} full, ${fdsAfter} after`)
    t.ok(fdsAfter <= fdsAtRest, `l4lb's fds back to their resting count (${fdsAfter} ≤ ${fdsAtRest})`)

    t.equal(lb.exit, null, 'l4lb is still running')
    t.same(
      lb.lines.filter(l => typeof l.level === 'number' && l.level >= 50 && !String(l.msg).startsWith('out of file descriptors')),
      [],
      'no error-level line other than the episode\'s',
    )
    t.equal(lb.stderr, '', 'nothing on stderr')
  })
}
