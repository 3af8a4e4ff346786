/**
 * Connect and failover (SPEC §1 step 6, §8): a refused or timed-out connect
 * moves the connection to the next backend clockwise, up to `retries` more
 * attempts, and the bytes the client sent meanwhile reach the backend that
 * finally accepts, exactly once. All attempts failing closes the client with
 * `connect_failed` (then `no_backend` once every backend is marked down),
 * and l4lb keeps serving.
 *
 * Scenarios are data: the ring home's kind, the frontend overrides, and the
 * expected sequence of attempts (`NAME/why` for a failed connect, then the
 * backend that took the connection). The ring home comes from
 * `l4lb explain`; the next one clockwise is explain's answer for the same
 * backends without the home (ring points derive from names only).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import {
  blackholeAddress,
  connectFrom,
  refusingAddress,
  request,
  reservePort,
  startEchoBackend,
  startNamedBackend,
  writeConfig,
  type L4lbProcess,
  type TestLike,
} from '../helpers'
import { closedLine, drainUntilClose, explain, oneFrontend, sha256, startLb, waitUntilUp, type BackendEntry } from '../util/integration'

const NAMES = ['a', 'b', 'c']
const PAYLOAD = 100 * 1024

interface Scenario {
  name: string
  /** What listens at the ring home's address. */
  home: 'refusing' | 'blackhole'
  fe: Record<string, unknown>
  /** Expected attempts, given the ring home and the next backend clockwise. */
  sequence(home: string, next: string): string[]
  reason: 'client_closed' | 'connect_failed'
}

const scenarios: Scenario[] = [
  {
    name: 'ring home refuses: the next backend clockwise takes the connection',
    home: 'refusing',
    fe: {},
    sequence: (home, next) => [`${home}/refused`, next],
    reason: 'client_closed',
  },
  {
    name: 'ring home black-holed: connect times out after 500ms, the next backend takes it',
    home: 'blackhole',
    fe: { timeouts: { connect: '500ms' } },
    sequence: (home, next) => [`${home}/timeout`, next],
    reason: 'client_closed',
  },
  {
    name: 'retries 0: ring home refuses, the connection fails',
    home: 'refusing',
    fe: { retries: 0 },
    sequence: home => [`${home}/refused`],
    reason: 'connect_failed',
  },
]

/** `NAME/why` of each failed connect of `client`, then the backend of its close record. */
async function attempts(lb: L4lbProcess, client: string, since: number): Promise<{ sequence: string[]; reason: unknown; bytesIn: unknown }> {
  const closed = await closedLine(lb, client, since)
  const end = lb.lines.indexOf(closed)
  const sequence = lb.lines
    .slice(since, end)
    .filter(l => l.msg === 'connect failed' && l.client === client)
    .map(l => `${String(l.backend)}/${String(l.why)}`)
  if (typeof closed.backend === 'string') sequence.push(closed.backend)
  return { sequence, reason: closed.reason, bytesIn: closed.bytes_in }
}

/** Ring home of `client` among `names`, and the next backend clockwise after it. */
async function homeAndNext(t: TestLike, client: string): Promise<[string, string]> {
  const addr = await refusingAddress()
  const cfg = (names: string[]): string =>
    writeConfig(t, oneFrontend(names.map(name => ({ name, address: addr }))))
  const home = (await explain(cfg(NAMES), client)).backend!
  const next = (await explain(cfg(NAMES.filter(n => n !== home)), client)).backend!
  return [home, next]
}

for (const [i, sc] of scenarios.entries()) {
  t.test(sc.name, async t => {
    const client = `127.0.9.${i + 1}`
    const [home, next] = await homeAndNext(t, client)
    const echoes = new Map(
      await Promise.all(
        NAMES.filter(n => n !== home).map(async n => [n, await startEchoBackend(t, { name: n })] as const),
      ),
    )
    const homeAddress = sc.home === 'refusing' ? await refusingAddress() : (await blackholeAddress(t)).address
    const backends: BackendEntry[] = NAMES.map(name => ({
      name,
      address: name === home ? homeAddress : echoes.get(name)!.address,
    }))
    const { lb, port } = await startLb(t, oneFrontend(backends, sc.fe, { log: { level: 'debug' } }))

    const since = lb.mark()
    const sock = await connectFrom(port, client)
    t.teardown(() => sock.destroy())
    const received = drainUntilClose(sock, 15_000)
    // Written at once, before any backend has answered: buffered through the failover.
    const payload = randomBytes(PAYLOAD)
    sock.end(payload)
    const got = await received

    const expected = sc.sequence(home, next)
    const seen = await attempts(lb, client, since)
    t.same(seen.sequence, expected, `attempts: ${expected.join(' → ')}`)
    t.equal(seen.reason, sc.reason, `closed with reason ${sc.reason}`)
    if (sc.reason === 'connect_failed') {
      t.equal(got.data.length, 0, 'the client got no bytes, only a close')
      t.equal(seen.bytesIn, 0, 'nothing reached any backend')
      for (const [n, b] of echoes) t.equal(b.connections, 0, `backend ${n} saw no connection`)
    } else {
      t.equal(got.error, null, 'no error on the client side')
      t.equal(got.data.length, PAYLOAD, `all ${PAYLOAD} bytes came back through ${next}`)
      t.equal(sha256(got.data), sha256(payload), 'the echoed bytes are the bytes sent before the failover (sha256)')
      t.equal(seen.bytesIn, PAYLOAD, 'bytes_in counts them once')
      t.equal(echoes.get(next)!.connections, 1, `${next} accepted exactly one connection`)
    }
  })
}

t.test('all backends down: the client is closed and logged; l4lb keeps serving', async t => {
  const ports = await Promise.all(NAMES.map(() => reservePort()))
  const healthy = await startNamedBackend(t, 'h')
  const config = {
    shutdown_grace: '2s',
    log: { level: 'debug' },
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        retries: 2,
        passive: { max_fails: 1, fail_timeout: '1s' },
        backends: NAMES.map((name, i) => ({ name, address: `127.0.0.1:${ports[i]}` })),
      },
      { name: 'healthy', listen: ['127.0.0.1:0'], backends: [{ name: 'h', address: healthy.address }] },
    ],
  }
  const { lb, port } = await startLb(t, config, 'fe')
  const healthyPort = await lb.listening('healthy')

  // Every attempt refused: three connects, then the client is closed.
  let since = lb.mark()
  const first = await connectFrom(port, '127.0.9.50')
  t.teardown(() => first.destroy())
  const firstClosed = drainUntilClose(first)
  first.write('hello?')
  const got = await firstClosed
  t.equal(got.data.length, 0, 'the client got no bytes, only a close')
  const seen = await attempts(lb, '127.0.9.50', since)
  t.equal(seen.reason, 'connect_failed', 'first client: reason connect_failed')
  t.same(
    seen.sequence.map(s => s.split('/')[1]).sort(),
    ['refused', 'refused', 'refused'],
    `three refused attempts (${seen.sequence.join(', ')})`,
  )
  t.same(seen.sequence.map(s => s.split('/')[0]).sort(), NAMES, 'one attempt on each backend')
  for (const n of NAMES) await lb.waitForMsg('backend down', { backend: n }, { since })

  // Every backend is marked down now: nothing is even tried.
  since = lb.mark()
  const second = await connectFrom(port, '127.0.9.51')
  t.teardown(() => second.destroy())
  t.equal((await drainUntilClose(second)).data.length, 0, 'second client closed without data')
  const second_ = await attempts(lb, '127.0.9.51', since)
  t.equal(second_.reason, 'no_backend', 'second client: reason no_backend')
  t.same(second_.sequence, [], 'no connect attempted')

  // The process still serves: another frontend at once, and this one once a backend is back.
  t.equal(await request(healthyPort, '127.0.9.52'), 'h', 'another frontend of the same process serves')
  const back = await startNamedBackend(t, 'b', { port: ports[1] })
  t.equal(back.port, ports[1], 'backend b listens again on its port')
  await waitUntilUp(lb, 'b')
  t.equal(await request(port, '127.0.9.53', { timeoutMs: 10_000 }), 'b', 'a new client reaches the recovered backend b')
})
