/**
 * A Session built in-process from compiled plans, with a fake Dialer that
 * refuses one backend and dials the other for real (STYLE §3 habit 13):
 * failover as a table of attempts, the lease giving back every count, the
 * one close line with pool, route and attempts, read from an injected pino
 * destination.
 */
import * as net from 'node:net'
import t from 'tap'
import { compile } from '../../src/config/compile'
import { createLogger } from '../../src/log'
import { PoolRuntime } from '../../src/placement/pool'
import { ConnectError, type Dialer } from '../../src/proxy/dialer'
import { FrontendRuntime } from '../../src/proxy/frontend'
import { ResourceWatch } from '../../src/proxy/resources'
import { Session } from '../../src/proxy/session'
import { LocalTable } from '../../src/routing/persistence'
import { affinityKey } from '../../src/routing/keys'
import { ok } from '../util/config'
import { waitForEvent } from '../helpers'

interface Line { msg: string; [k: string]: unknown }

/** An echo server on loopback; its port. */
async function echoServer(t: { teardown(f: () => void): void }): Promise<number> {
  const srv = net.createServer((s) => s.pipe(s))
  srv.listen(0, '127.0.0.1')
  await waitForEvent(srv, 'listening')
  t.teardown(() => srv.close())
  return (srv.address() as net.AddressInfo).port
}

/** A connected client/server socket pair on loopback: [client side, l4lb side]. */
async function socketPair(t: { teardown(f: () => void): void }): Promise<[net.Socket, net.Socket]> {
  const srv = net.createServer({ allowHalfOpen: true })
  srv.listen(0, '127.0.0.1')
  await waitForEvent(srv, 'listening')
  const accepted = waitForEvent(srv, 'connection')
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1')
  const [inner] = (await accepted) as [net.Socket]
  srv.close()
  t.teardown(() => {
    client.destroy()
    inner.destroy()
  })
  return [client, inner]
}

const cases: { name: string; refuse: string[]; retries: number; attempts: string[] | undefined; backend: string | null; reason: string }[] = [
  { name: 'first backend accepts', refuse: [], retries: 2, attempts: undefined, backend: 'home', reason: 'client_closed' },
  { name: 'home refuses, the next accepts', refuse: ['home'], retries: 2, attempts: ['home:refused', 'next:ok'], backend: 'next', reason: 'client_closed' },
  { name: 'both refuse', refuse: ['home', 'next'], retries: 2, attempts: ['home:refused', 'next:refused'], backend: null, reason: 'connect_failed' },
  { name: 'no retries left', refuse: ['home'], retries: 0, attempts: undefined, backend: null, reason: 'connect_failed' },
]

for (const c of cases) {
  t.test(`session with a fake dialer: ${c.name}`, async (t) => {
    const echo = await echoServer(t)
    // Two backends named so that the client's key lands on "home" first: found by trying keys.
    const config = ok({
      pools: [{ name: 'p', retries: c.retries, backends: [{ name: 'home', address: '127.0.0.1:1' }, { name: 'next', address: '127.0.0.1:2' }] }],
      frontends: [{ name: 'fe', listen: '127.0.0.1:0', routes: [{ name: 'all', match: { source: '127.0.0.0/8' }, pool: 'p' }] }],
    })
    const plan = compile(config)
    const lines: Line[] = []
    const log = createLogger('debug', 'json', { write: (s: string) => void lines.push(JSON.parse(s) as Line) })
    const byPort: Record<number, string> = { 1: 'home', 2: 'next' }
    const dialed: string[] = []
    const dialer: Dialer = {
      async connect(addr) {
        const name = byPort[addr.port]!
        dialed.push(name)
        if (c.refuse.includes(name)) throw new ConnectError('refused', 'ECONNREFUSED')
        const s = net.connect(echo, '127.0.0.1')
        await waitForEvent(s, 'connect')
        return s
      },
    }
    const poolPlan = plan.pools.get('p')!
    const table = new LocalTable(60_000, 1000)
    const pool = PoolRuntime.build(poolPlan, undefined, log, dialer, table)
    const fe = FrontendRuntime.build(plan.frontends[0]!, undefined, log, new ResourceWatch(log))
    // a client address whose ring home is "home"
    let ip = ''
    for (let n = 1; n < 250 && ip === ''; n++) {
      const cand = `10.0.0.${n}`
      const k = affinityKey(poolPlan.key, { client: cand, viaProxy: false, sni: null }).key
      if (pool.router.names[pool.router.decide(k, pool.router.hash(k), null, pool.view)!.backend] === 'home') ip = cand
    }
    const [client, inner] = await socketPair(t)
    fe.stats.active++
    const key = affinityKey(poolPlan.key, { client: ip, viaProxy: false, sni: null })
    let ended = false
    const s = new Session(fe, pool, 'all', inner, { client: { address: ip, port: 5555 }, viaProxy: false, destination: null, early: null, ended: false, sni: null, alpn: [], protocol: null }, key, false, dialer, () => void (ended = true))
    s.start()
    if (c.backend !== null) {
      client.write('ping')
      const [echoed] = (await waitForEvent(client, 'data')) as unknown as [Buffer]
      t.equal(String(echoed), 'ping', 'the bytes come back through the backend that accepted')
      client.end()
    }
    await waitForEvent(client, 'close')
    while (!ended) await new Promise((r) => setImmediate(r))
    const closed = lines.filter((l) => l.msg === 'connection closed')
    t.equal(closed.length, 1, 'one close line')
    const line = closed[0]!
    t.same(
      { pool: line.pool, route: line.route, backend: line.backend, reason: line.reason, attempts: line.attempts, key: line.key },
      { pool: 'p', route: 'all', backend: c.backend, reason: c.reason, attempts: c.attempts, key: `ip:${ip}` },
      'pool, route, backend, reason and attempts as the table says',
    )
    t.same(dialed, c.refuse.length === 0 || c.retries === 0 ? ['home'] : ['home', 'next'], 'the dial sequence')
    t.same(pool.backends.map((b) => b.active), [0, 0], 'the lease gave every backend count back')
    t.equal(fe.stats.active, 0, 'the frontend counts no open connection')
    const entry = table.get(`ip:${ip}`)
    if (c.backend !== null) t.same([entry?.backend, entry?.connections], [c.backend, 0], 'the entry points at the backend that accepted, unpinned')
  })
}
