/**
 * Shared tables (SPEC §6): frontends naming the same `persistence.table`
 * use one table, so a client placed on a backend through one port reaches
 * the same backend through the other, also after a failover on one of them.
 */
import t, { type Test } from 'tap'
import { adminRequest, request, runL4lb, startNamedBackend, writeConfig, type Backend } from '../helpers'
import { explain } from '../util/integration'

const be = (name: string, b: Backend): { name: string; address: string } => ({ name, address: b.address })

interface Two {
  lb: ReturnType<typeof runL4lb>
  a: number
  b: number
  admin: number
  file: string
}

async function startTwo(t: Test, frontends: unknown[]): Promise<Two> {
  const file = writeConfig(t, { shutdown_grace: '2s', admin: { listen: '127.0.0.1:0' }, frontends })
  const lb = runL4lb(t, ['run', '-c', file])
  const a = await lb.listening('fe-a')
  const b = await lb.listening('fe-b')
  const admin = await lb.adminPort()
  return { lb, a, b, admin, file }
}

t.test('round_robin placement through port A is honoured through port B (and the other way)', async t => {
  // round_robin with source_ip affinity: each frontend has its own counter,
  // so without a shared table B would place the clients in its own order.
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const fe = (name: string): Record<string, unknown> => ({
    name,
    listen: ['127.0.0.1:0'],
    balance: { algorithm: 'round_robin' },
    persistence: { table: 'svc' },
    backends: backends.map(b => be(b.name, b)),
  })
  const two = await startTwo(t, [fe('fe-a'), fe('fe-b')])
  const viaA = Array.from({ length: 6 }, (_, i) => `127.0.2.${i + 1}`)
  const viaB = Array.from({ length: 6 }, (_, i) => `127.0.2.${i + 101}`)
  const placedA = new Map<string, string>()
  for (const c of viaA) placedA.set(c, await request(two.a, c))
  const placedB = new Map<string, string>()
  for (const c of viaB) placedB.set(c, await request(two.b, c))
  t.same(new Set(placedA.values()), new Set(['b1', 'b2', 'b3']), 'round_robin spread the A clients over all three')
  // Through the other port, in reverse order, several times each.
  for (const c of [...viaA].reverse()) {
    for (let k = 0; k < 3; k++) t.equal(await request(two.b, c), placedA.get(c), `${c} placed through A reaches ${placedA.get(c)} through B`)
  }
  for (const c of [...viaB].reverse()) t.equal(await request(two.a, c), placedB.get(c), `${c} placed through B reaches ${placedB.get(c)} through A`)
  // One table: both frontends list the same 12 entries.
  const ea = (await adminRequest(two.admin, 'GET', '/persistence/fe-a')).json() as { entries: { key: string; backend: string }[] }
  const eb = (await adminRequest(two.admin, 'GET', '/persistence/fe-b')).json() as { entries: { key: string; backend: string }[] }
  const norm = (x: typeof ea): string[] => x.entries.map(e => `${e.key}=${e.backend}`).sort()
  t.equal(ea.entries.length, 12, 'fe-a shows 12 entries')
  t.same(norm(eb), norm(ea), 'fe-b shows the same entries')
})

t.test('a failover through port A moves the client through port B too', async t => {
  // Both frontends name the backends b1, b2, b3. A's b1 is a server of its
  // own (greeting "b1") that the test stops; B's b1 stays up. So only A
  // sees b1 fail, and without a shared table B would keep sending the
  // client to its live b1.
  const aB1 = await startNamedBackend(t, 'b1')
  const bB1 = await startNamedBackend(t, 'b1')
  const b2 = await startNamedBackend(t, 'b2')
  const b3 = await startNamedBackend(t, 'b3')
  const fe = (name: string, b1: Backend): Record<string, unknown> => ({
    name,
    listen: ['127.0.0.1:0'],
    persistence: { table: 'svc' },
    backends: [be('b1', b1), be('b2', b2), be('b3', b3)],
  })
  // A third frontend with its own table and the same backend names shows
  // each client's ring home without touching the shared table.
  const probe = { ...fe('probe', bB1), persistence: {} }
  const two = await startTwo(t, [fe('fe-a', aB1), fe('fe-b', bB1), probe])
  const probePort = await two.lb.listening('probe')

  // Two clients whose ring home is b1.
  const candidates = Array.from({ length: 30 }, (_, i) => `127.0.5.${i + 1}`)
  const onB1: string[] = []
  for (const c of candidates) if ((await request(probePort, c)) === 'b1') onB1.push(c)
  t.ok(onB1.length >= 2, `clients homed on b1: ${onB1.join(', ')}`)
  const [early, late] = onB1 as [string, string]
  const homes = await Promise.all([early, late].map(c => explain(two.file, c, 'fe-a')))
  t.same(homes.map(h => h.backend), ['b1', 'b1'], 'explain agrees: their ring home through fe-a is b1')
  const b1Before = bB1.connections

  // Before the failure both ports agree on b1, served by different servers.
  t.equal(await request(two.a, early), 'b1', `${early} through A: b1`)
  t.equal(await request(two.b, early), 'b1', `${early} through B: b1`)
  t.equal(aB1.connections, 1, "A's b1 server took the A connection")
  t.equal(bB1.connections, b1Before + 1, "B's b1 server took the B connection")

  await aB1.close() // A's b1 now refuses
  const moved = await request(two.a, early)
  t.not(moved, 'b1', `${early} through A failed over to ${moved}`)
  const line = await two.lb.waitForMsg('connection closed', { frontend: 'fe-a', client: early, backend: moved })
  t.ok(line, 'logged on fe-a with the new backend')
  for (let k = 0; k < 3; k++) t.equal(await request(two.b, early), moved, `${early} through B (its b1 up) lands on ${moved}`)
  t.equal(bB1.connections, b1Before + 1, "B's live b1 got no more connections from the moved client")

  // A client seen for the first time through A while A's b1 refuses.
  const placed = await request(two.a, late)
  t.not(placed, 'b1', `${late} first through A: placed on ${placed}`)
  t.equal(await request(two.b, late), placed, `${late} through B: the same ${placed}`)
  t.equal(bB1.connections, b1Before + 1, "B's b1 never saw it")
})
