/**
 * Two l4lb instances sharing persistence through a real Redis (SPEC §6
 * `persistence.store`): a failover through instance A is honoured through
 * instance B; one client's simultaneous first connections spread over both
 * instances reach one backend (set-if-absent); with Redis gone both keep
 * serving from their own tables, and they reconnect when it returns.
 *
 * redis-server is started by the test on a free loopback port (no
 * persistence files); `.ci/run` installs it.
 */
import t, { type Test } from 'tap'
import * as net from 'node:net'
import {
  adminRequest,
  connectFrom,
  findTool,
  readLine,
  request,
  requireTool,
  reservePort,
  runL4lb,
  spawnLogged,
  startNamedBackend,
  writeConfig,
  type Backend,
  type L4lbProcess,
  type LoggedProcess,
} from '../helpers'

interface Instance {
  lb: L4lbProcess
  admin: number
  port: (frontend: string) => Promise<number>
}

async function startRedis(t: Test, port: number): Promise<LoggedProcess> {
  const redis = spawnLogged(t, findTool('redis-server')!, [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'notice',
  ])
  await redis.waitFor(l => typeof l.raw === 'string' && l.raw.includes('Ready to accept connections'), {
    what: 'redis-server to be ready',
  })
  return redis
}

async function startInstance(t: Test, frontends: unknown[]): Promise<Instance> {
  const file = writeConfig(t, { shutdown_grace: '1s', admin: { listen: '127.0.0.1:0' }, frontends })
  const lb = runL4lb(t, ['run', '-c', file])
  const admin = await lb.adminPort()
  return { lb, admin, port: fe => lb.listening(fe) }
}

const be = (name: string, b: Backend): { name: string; address: string } => ({ name, address: b.address })

async function entryOf(admin: number, fe: string, key: string): Promise<string | null> {
  const r = await adminRequest(admin, 'GET', `/persistence/${fe}?key=${encodeURIComponent(key)}`)
  if (r.status === 404) return null
  return (r.json() as { entries: { backend: string }[] }).entries[0]!.backend
}

/** Bounded polling of the admin API: SPEC §6 promises another instance's entry is honoured within 2 s. */
async function untilEntry(admin: number, fe: string, key: string, backend: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: string | null = null
  while ((last = await entryOf(admin, fe, key)) !== backend) {
    if (Date.now() > deadline) throw new Error(`${key} on ${fe}: entry ${last}, not ${backend}, after ${timeoutMs}ms`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/** `n` connections of one client opened at once to each port, held until all have their greeting. */
async function simultaneous(ports: readonly number[], client: string, n: number): Promise<string[]> {
  const sockets: net.Socket[] = []
  try {
    const opened = ports.flatMap(p => Array.from({ length: n }, () => connectFrom(p, client)))
    const settled = await Promise.allSettled(opened)
    for (const s of settled) if (s.status === 'fulfilled') sockets.push(s.value)
    const failed = settled.find(s => s.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
    return await Promise.all(sockets.map(s => readLine(s)))
  } finally {
    for (const s of sockets) s.destroy()
  }
}

t.test('two instances, one Redis', async t => {
  if (!requireTool(t, 'redis-server')) return
  const redisPort = await reservePort()
  let redis = await startRedis(t, redisPort)
  const store = `redis://127.0.0.1:${redisPort}/0`

  // Instance A's b1 is its own server, stopped below: only A sees b1 fail.
  // B's b1 stays up, so without the store B would keep b1's clients on b1.
  const aB1 = await startNamedBackend(t, 'b1')
  const bB1 = await startNamedBackend(t, 'b1')
  const b2 = await startNamedBackend(t, 'b2')
  const b3 = await startNamedBackend(t, 'b3')
  const rrB1 = await startNamedBackend(t, 'b1') // the round_robin frontends' b1, up throughout
  const frontends = (b1: Backend): unknown[] => {
    const backends = [be('b1', b1), be('b2', b2), be('b3', b3)]
    const rrBackends = [be('b1', rrB1), be('b2', b2), be('b3', b3)]
    const listen = ['127.0.0.1:0']
    return [
      // One refusal marks a backend down for good: A's b1 stays down once it failed.
      { name: 'fe', listen, persistence: { store }, passive: { max_fails: 1, fail_timeout: '1h' }, backends },
      // round_robin with source_ip: each instance places by its own counter.
      { name: 'rr', listen, balance: { algorithm: 'round_robin' }, persistence: { store }, backends: rrBackends },
      { name: 'rr-local', listen, balance: { algorithm: 'round_robin' }, backends: rrBackends },
      // Own table, no store: shows a client's ring home without touching the others.
      { name: 'probe', listen, backends },
    ]
  }
  const A = await startInstance(t, frontends(aB1))
  const B = await startInstance(t, frontends(bB1))
  for (const x of [A, B]) {
    for (const table of ['frontend:fe', 'frontend:rr']) {
      await x.lb.waitForMsg('store connected', { table }, { what: `"store connected" for ${table}` })
    }
  }
  const [aFe, aRr, aLocal, probe] = await Promise.all(['fe', 'rr', 'rr-local', 'probe'].map(f => A.port(f)))
  const [bFe, bRr, bLocal] = await Promise.all(['fe', 'rr', 'rr-local'].map(f => B.port(f)))

  // Clients whose ring home is b1.
  const onB1: string[] = []
  for (let i = 1; onB1.length < 4 && i < 80; i++) {
    const c = `127.0.6.${i}`
    if ((await request(probe!, c)) === 'b1') onB1.push(c)
  }
  t.equal(onB1.length, 4, `four clients homed on b1: ${onB1.join(', ')}`)
  const [early, late, afterOutage, another] = onB1 as [string, string, string, string]

  await t.test('a failover through A is honoured through B', async t => {
    t.equal(await request(aFe!, early), 'b1', `${early} through A: b1`)
    t.equal(await request(bFe!, early), 'b1', `${early} through B: b1`)
    const b1Seen = bB1.connections
    await aB1.close() // A's b1 refuses from now on
    const moved = await request(aFe!, early)
    t.not(moved, 'b1', `${early} failed over through A to ${moved}`)
    await untilEntry(B.admin, 'fe', `ip:${early}`, moved)
    t.pass(`B's table has ${early} on ${moved} within 2 s`)
    for (let k = 0; k < 3; k++) t.equal(await request(bFe!, early), moved, `${early} through B (its b1 up): ${moved}`)

    // A client B has never seen, placed first through A while A's b1 refuses.
    const placed = await request(aFe!, late)
    t.not(placed, 'b1', `${late} first through A: ${placed}`)
    await untilEntry(B.admin, 'fe', `ip:${late}`, placed)
    t.equal(await request(bFe!, late), placed, `${late} through B: the same ${placed}`)
    t.equal(bB1.connections, b1Seen, "B's live b1 got none of these connections")
  })

  await t.test('50 simultaneous first connections of one client over both instances reach one backend', async t => {
    // Advance A's round_robin counters by one placement, so that without the
    // store A and B would place the next new key on different backends.
    await request(aRr!, '127.0.7.1')
    await request(aLocal!, '127.0.7.1')
    const without = await simultaneous([aLocal!, bLocal!], '127.0.7.2', 25)
    t.equal(new Set(without).size, 2, `control without the store: the instances disagree (${[...new Set(without)].join(', ')})`)

    // Several clients, one after the other, each with 25 + 25 simultaneous first connections.
    for (let i = 0; i < 8; i++) {
      const client = `127.0.7.${10 + i}`
      const got = await simultaneous([aRr!, bRr!], client, 25)
      const counts = new Map<string, number>()
      for (const g of got) counts.set(g, (counts.get(g) ?? 0) + 1)
      t.equal(got.length, 50, `${client}: 50 connections answered`)
      t.same([...counts.keys()], [got[0]], `${client}: all 50 reached one backend (got ${JSON.stringify(Object.fromEntries(counts))})`)
      const la = await entryOf(A.admin, 'rr', `ip:${client}`)
      const lb = await entryOf(B.admin, 'rr', `ip:${client}`)
      t.same([la, lb], [got[0], got[0]], `${client}: both instances hold the same entry`)
    }
  })

  await t.test('Redis stopped: both keep serving; Redis back: they reconnect and share again', async t => {
    const ma = A.lb.mark()
    const mb = B.lb.mark()
    redis.kill('SIGKILL')
    await redis.exited
    for (const [x, m] of [[A, ma], [B, mb]] as const) {
      const line = await x.lb.waitForMsg('store unreachable: routing on the local table', {}, { since: m, timeoutMs: 5_000 })
      t.ok(typeof line.level === 'number' && line.level >= 40, 'logged at warn level')
    }
    const storeOf = async (admin: number) => {
      const s = (await adminRequest(admin, 'GET', '/status')).json() as { frontends: { name: string; store?: { up: boolean } }[] }
      return s.frontends.find(f => f.name === 'fe')?.store
    }
    t.equal((await storeOf(A.admin))?.up, false, '/status says the store is down')
    const metrics = (await adminRequest(A.admin, 'GET', '/metrics')).text
    t.match(metrics, /^l4lb_store_up\{pool="fe"\} 0$/m, 'l4lb_store_up is 0 (labelled by pool, SPEC §9)')
    const moved = await entryOf(A.admin, 'fe', `ip:${early}`)
    // Existing clients keep their backend; new ones are placed; nothing waits on Redis.
    for (const [name, port] of [['A', aFe!], ['B', bFe!]] as const) {
      t.equal(await request(port, early, { timeoutMs: 2_500 }), moved, `${early} through ${name}: still ${moved}`)
    }
    const fresh = Array.from({ length: 10 }, (_, i) => `127.0.8.${i + 1}`)
    for (const c of fresh) {
      const a = await request(aFe!, c, { timeoutMs: 2_500 })
      const b = await request(bFe!, c, { timeoutMs: 2_500 })
      t.ok(['b1', 'b2', 'b3'].includes(a) && ['b1', 'b2', 'b3'].includes(b), `${c} served by both (${a}, ${b})`)
    }

    const ma2 = A.lb.mark()
    const mb2 = B.lb.mark()
    redis = await startRedis(t, redisPort)
    for (const [x, m] of [[A, ma2], [B, mb2]] as const) {
      await x.lb.waitForMsg('store connected', { table: 'frontend:fe' }, { since: m, timeoutMs: 5_000 })
    }
    t.pass('both instances logged "store connected" again within 5 s')
    t.equal((await storeOf(A.admin))?.up, true, '/status says the store is up again')
    const b1Seen = bB1.connections
    const placed = await request(aFe!, afterOutage)
    t.not(placed, 'b1', `${afterOutage} placed through A (its b1 refusing): ${placed}`)
    await untilEntry(B.admin, 'fe', `ip:${afterOutage}`, placed)
    t.equal(await request(bFe!, afterOutage), placed, `${afterOutage} through B: the same ${placed}`)
    // B has not seen this one: its first connection through B asks Redis.
    const p2 = await request(aFe!, another)
    t.not(p2, 'b1', `${another} placed through A: ${p2}`)
    t.equal(await request(bFe!, another), p2, `${another} through B: ${p2}`)
    t.equal(bB1.connections, b1Seen, "B's live b1 got none of them")
  })
})
