/**
 * Active health checks (SPEC §5): a backend killed mid-run is logged
 * `backend down` within fall × interval + timeout and `backend up` within
 * rise × interval + timeout after it returns; until the checks notice,
 * failover carries its clients (no client connection fails); the initial
 * state logs nothing; `send`/`expect` with an answer split over segments;
 * passive failures of real traffic count toward `fall` too.
 *
 * Timings are read from the l4lb log lines' own `time` and asserted with
 * 3x slack for loaded CI machines; the measured figure goes to a comment.
 */
import { EventEmitter } from 'node:events'
import type * as net from 'node:net'
import t from 'tap'
import {
  adminRequest,
  connectFrom,
  readLine,
  request,
  startBackend,
  startNamedBackend,
  withTimeout,
  type LogLine,
} from '../helpers'
import { TOKEN, adminConfig, backendStatus, entries, getStatus, ips, msSince, startLb, table } from './util'

const HC = { interval: '200ms', timeout: '100ms', rise: 2, fall: 2 }
const DOWN_BOUND_MS = 2 * 200 + 100 // fall × interval + timeout
const UP_BOUND_MS = 2 * 200 + 100 // rise × interval + timeout
const SLACK = 3

const transitions = (lines: readonly LogLine[], backend?: string): LogLine[] =>
  lines.filter(l => (l.msg === 'backend down' || l.msg === 'backend up') && (backend === undefined || l.backend === backend))

/** Resolves when the socket has closed (whether by FIN or reset). */
function closed(socket: net.Socket, what: string): Promise<unknown> {
  socket.on('error', () => undefined) // a reset is one way the close may come
  socket.resume()
  return withTimeout(new Promise(resolve => (socket.closed ? resolve(null) : socket.once('close', resolve))), 10_000, what)
}

t.test('a killed backend goes down within the bound, its clients move; back on its port, it comes up', async t => {
  const backends = await Promise.all(['a', 'b', 'c'].map(n => startNamedBackend(t, n)))
  const { lb, port, admin } = await startLb(t, adminConfig(entries(backends), { health_check: HC }))

  // Every backend has passed more than `rise` checks: still no transition logged.
  await Promise.all(backends.map(b => b.waitForConnections(HC.rise + 1)))
  t.same(transitions(lb.lines), [], 'the initial state logs no backend up/down line')

  const clients = ips(1, 10, 12)
  const home = new Map<string, string>()
  for (const c of clients) home.set(c, await request(port, c))
  const victimName = home.get(clients[0]!)!
  const victim = backends.find(b => b.name === victimName)!
  const its = clients.filter(c => home.get(c) === victimName)
  const others = clients.filter(c => home.get(c) !== victimName)
  t.comment(`victim ${victimName} has ${its.length} of ${clients.length} clients`)

  // One of its clients holds a connection open across the kill.
  const held = await connectFrom(port, its[0])
  t.equal(await readLine(held), victimName, 'the held connection reached the victim')
  const heldClosed = closed(held, 'the held connection to close after the kill')

  const mark = lb.mark()
  const killedAt = Date.now()
  await victim.close() // listener closed and its open sockets destroyed
  await heldClosed
  t.pass('the held connection was closed when its backend died')

  const down = await lb.waitForMsg('backend down', { frontend: 'fe', backend: victimName }, { since: mark, timeoutMs: 10_000 })
  const downMs = msSince(killedAt, down)
  t.comment(`backend down ${downMs} ms after the kill (bound ${DOWN_BOUND_MS} ms)`)
  t.ok(downMs <= SLACK * DOWN_BOUND_MS, `backend down within ${SLACK}x fall × interval + timeout (${downMs} ms)`)
  t.type(down.reason, 'string', 'backend down carries a reason')
  t.match(down.reason, /check/, 'the reason names the failed check')
  t.equal((await backendStatus(admin, 'fe', victimName)).state, 'down', '/status shows it down')

  // Its clients move; the others stay.
  const moved = new Map<string, string>()
  for (const c of its) {
    const name = await request(port, c)
    t.not(name, victimName, `${c} moved off ${victimName} (to ${name})`)
    moved.set(c, name)
  }
  for (const c of others) t.equal(await request(port, c), home.get(c), `${c} stays on ${home.get(c)}`)
  const entriesNow = await table(admin)
  for (const c of its) t.equal(entriesNow.get(`ip:${c}`), moved.get(c), `the table now sends ip:${c} to ${moved.get(c)}`)

  // Back on the same port.
  const mark2 = lb.mark()
  const backAt = Date.now()
  await startNamedBackend(t, victimName, { port: victim.port })
  const up = await lb.waitForMsg('backend up', { frontend: 'fe', backend: victimName }, { since: mark2, timeoutMs: 10_000 })
  const upMs = msSince(backAt, up)
  t.comment(`backend up ${upMs} ms after it returned (bound ${UP_BOUND_MS} ms)`)
  t.ok(upMs <= SLACK * UP_BOUND_MS, `backend up within ${SLACK}x rise × interval + timeout (${upMs} ms)`)
  t.type(up.reason, 'string', 'backend up carries a reason')
  t.equal((await backendStatus(admin, 'fe', victimName)).state, 'up', '/status shows it up')

  // Moved clients stay where the table says; a forgotten key goes home again.
  for (const c of its) t.equal(await request(port, c), moved.get(c), `${c} stays on ${moved.get(c)} after the recovery`)
  const forget = await adminRequest(admin, 'DELETE', `/persistence/fe?key=ip:${its[0]}`, { token: TOKEN })
  t.equal(forget.status, 200, 'forgot one moved key')
  t.equal(await request(port, its[0]), victimName, `${its[0]}, forgotten, is placed on its ring home ${victimName} again`)

  t.same(
    transitions(lb.lines, victimName).map(l => l.msg),
    ['backend down', 'backend up'],
    'exactly one line per transition',
  )
  t.same(transitions(lb.lines).filter(l => l.backend !== victimName), [], 'no transition for the healthy backends')
})

t.test('until the checks notice, failover carries every client: a stream across the kill has no failure', async t => {
  const backends = await Promise.all(['a', 'b', 'c'].map(n => startNamedBackend(t, n)))
  const { lb, port, admin } = await startLb(t, adminConfig(entries(backends), { health_check: HC }))
  const clients = ips(2, 10, 12)

  interface Result {
    client: string
    round: number
    backend?: string
    error?: string
  }
  const results: Result[] = []
  let rounds = 0
  // One round: every client connects at once and reads its backend's name.
  const round = async (): Promise<Result[]> => {
    const r = ++rounds
    const out = await Promise.all(
      clients.map(client =>
        request(port, client).then(
          backend => ({ client, round: r, backend }),
          (err: Error) => ({ client, round: r, error: err.message }),
        ),
      ),
    )
    results.push(...out)
    return out
  }

  const first = await round()
  const home = new Map(first.map(r => [r.client, r.backend ?? '']))
  const victimName = home.get(clients[0]!)!
  const victim = backends.find(b => b.name === victimName)!
  const its = clients.filter(c => home.get(c) === victimName)
  await round()
  const failoversBefore = (await getStatus(admin)).frontends[0]!.failovers as number

  // Killed between two rounds: every later connection is a new one.
  const mark = lb.mark()
  const killRound = rounds
  await victim.close()
  const isDown = (l: LogLine): boolean => l.msg === 'backend down' && l.backend === victimName
  while (!lb.lines.slice(mark).some(isDown) && rounds < killRound + 50) await round()
  const detectedRound = rounds
  await round()
  await round()
  t.comment(`victim ${victimName} (${its.length} clients); detected after ${detectedRound - killRound} round(s)`)

  t.ok(lb.lines.slice(mark).some(isDown), 'the dead backend was marked down')
  t.same(
    results.filter(r => r.error !== undefined),
    [],
    `no client connection failed (${results.length} connections from ${clients.length} clients)`,
  )
  const after = results.filter(r => r.round > killRound)
  t.ok(after.length > 0, 'connections were made after the kill')
  t.same(
    after.filter(r => r.backend === victimName),
    [],
    'no connection after the kill reached the dead backend',
  )
  for (const r of after) {
    if (home.get(r.client) !== victimName) t.equal(r.backend, home.get(r.client), `${r.client} (round ${r.round}) kept ${r.backend}`)
  }
  const failoversAfter = (await getStatus(admin)).frontends[0]!.failovers as number
  t.ok(
    failoversAfter > failoversBefore,
    `connections sent to the dead backend before it was marked down were carried over (${failoversAfter - failoversBefore} failovers)`,
  )
})

t.test('with active checks, passive failures of real traffic count toward fall', async t => {
  const backends = await Promise.all(['a', 'b', 'c'].map(n => startNamedBackend(t, n)))
  // A long interval: after the first round of checks, only traffic can find the failure.
  const { lb, port, admin } = await startLb(t, adminConfig(entries(backends), { health_check: { ...HC, interval: '1h' } }))
  const clients = ips(3, 10, 12)
  const home = new Map<string, string>()
  for (const c of clients) home.set(c, await request(port, c))
  const counts = new Map<string, number>()
  for (const b of home.values()) counts.set(b, (counts.get(b) ?? 0) + 1)
  const victimName = [...counts.entries()].sort((x, y) => y[1] - x[1])[0]![0]
  const victim = backends.find(b => b.name === victimName)!
  const its = clients.filter(c => home.get(c) === victimName)
  t.ok(its.length >= 3, `the victim ${victimName} has ${its.length} clients`)

  const mark = lb.mark()
  await victim.close()
  const n1 = await request(port, its[0])
  t.not(n1, victimName, `first client failed over to ${n1}`)
  const closed1 = await lb.waitForMsg('connection closed', { client: its[0] }, { since: mark })
  const before = lb.lines.slice(mark, lb.lines.indexOf(closed1))
  t.same(transitions(before), [], 'one failure (fall is 2): not down yet')

  const n2 = await request(port, its[1])
  t.not(n2, victimName, `second client failed over to ${n2}`)
  const down = await lb.waitForMsg('backend down', { frontend: 'fe', backend: victimName }, { since: mark })
  t.match(down.reason, /traffic/, 'the reason names the failures of real traffic')
  t.equal((await backendStatus(admin, 'fe', victimName)).state, 'down', '/status shows it down')

  // Down now: the next client skips it without trying it.
  const failovers = (await getStatus(admin)).frontends[0]!.failovers
  const n3 = await request(port, its[2])
  t.not(n3, victimName, `third client placed on ${n3}`)
  t.equal((await getStatus(admin)).frontends[0]!.failovers, failovers, 'and no connect to the down backend was tried')
  t.equal(transitions(lb.lines, victimName).length, 1, 'one backend down line, no more')
})

t.test('send/expect: an answer split over two segments passes; -ERR and silence fail', async t => {
  const PING = 'PING\r\n'
  const pongs = new EventEmitter()
  let answered = 0
  // Redis-like: answers +PONG\r\n to exactly PING\r\n, in two writes 20 ms apart.
  const pong = await startBackend(t, 'pong', socket => {
    let got = ''
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1')
      if (got.length < PING.length) return
      if (got !== PING) return // wrong bytes: no answer, so the check fails
      socket.write('+PO')
      const timer = setTimeout(() => {
        socket.write('NG\r\n')
        answered++
        pongs.emit('pong')
      }, 20)
      socket.once('close', () => clearTimeout(timer))
    })
  })
  const err = await startBackend(t, 'err', socket => {
    socket.once('data', () => socket.write('-ERR unknown command\r\n'))
  })
  const silent = await startBackend(t, 'silent', socket => socket.resume())

  const yaml = `admin:
  listen: 127.0.0.1:0
  token: ${TOKEN}
shutdown_grace: 1s
frontends:
  - name: fe
    listen: [127.0.0.1:0]
    health_check:
      interval: 200ms
      timeout: 500ms
      rise: 2
      fall: 2
      send: PING\\r\\n
      expect: +PONG\\r\\n
    backends:
      - { name: pong, address: ${pong.address} }
      - { name: err, address: ${err.address} }
      - { name: silent, address: ${silent.address} }
`
  const { lb, admin } = await startLb(t, yaml)
  const errDown = await lb.waitForMsg('backend down', { frontend: 'fe', backend: 'err' })
  const silentDown = await lb.waitForMsg('backend down', { frontend: 'fe', backend: 'silent' })
  t.type(errDown.reason, 'string', 'err: down, with a reason')
  t.match(silentDown.reason, /timeout/, 'silent: down, for want of an answer within the timeout')

  // pong keeps passing: more checks than `fall` after the others went down.
  const target = answered + 4
  await withTimeout(
    new Promise<void>(resolve => {
      const check = (): void => {
        if (answered < target) return
        pongs.off('pong', check)
        resolve()
      }
      pongs.on('pong', check)
      check()
    }),
    10_000,
    `pong to answer ${target} checks (answered ${answered})`,
  )
  // Let the checker see the last answer: its next PING (a new connection) proves the check finished.
  await pong.waitForConnections(pong.connections + 1)
  t.same(transitions(lb.lines, 'pong'), [], 'pong, answering in two segments, never went down')
  const s = await getStatus(admin)
  t.same(
    Object.fromEntries(s.frontends[0]!.backends.map(b => [b.name, b.state])),
    { pong: 'up', err: 'down', silent: 'down' },
    '/status agrees',
  )
})
