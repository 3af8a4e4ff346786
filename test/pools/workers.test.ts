/**
 * Pools under `workers: 2` (SPEC §7, §9): two frontends on two ports route
 * to one round_robin pool; whichever worker accepts, and whichever port a
 * client uses, it reaches one backend (the primary holds the pool's one
 * table and a lease per connection); /status sums per pool; a reload that
 * moves a route reaches the workers.
 */
import t from 'tap'
import { adminRequest, request, runL4lb, startNamedBackend, writeConfig } from '../helpers'
import { entries, mapLimit } from '../util/integration'

interface Status {
  pools: { name: string; persistence: { size: number }; backends: { name: string; total: number; active: number }[] }[]
  frontends: { name: string; total: number; pools: string[] }[]
}

t.test('workers: 2 with a pool behind two frontends', async t => {
  const backends = await Promise.all(['w1', 'w2', 'w3'].map(n => startNamedBackend(t, n)))
  const [x1] = await Promise.all([startNamedBackend(t, 'x1')])
  const config = (labPool: string): Record<string, unknown> => ({
    workers: 2,
    shutdown_grace: '2s',
    admin: { listen: '127.0.0.1:0' },
    pools: [
      { name: 'shared', balance: { algorithm: 'round_robin' }, backends: entries(backends) },
      { name: 'other', backends: entries([x1!]) },
    ],
    frontends: [
      { name: 'a', listen: '127.0.0.1:0', pool: 'shared' },
      { name: 'b', listen: '127.0.0.1:0', routes: [{ name: 'lab', match: { source: '127.0.9.0/24' }, pool: labPool }, { pool: 'shared' }] },
    ],
  })
  const file = writeConfig(t, config('other'))
  const lb = runL4lb(t, ['run', '-c', file])
  const portA = await lb.listening('a')
  const portB = await lb.listening('b')
  const admin = await lb.adminPort()
  await lb.waitForMsg('workers ready', { workers: 2 })

  // round_robin: a new key's backend depends on the placing counter, so only one shared table keeps each
  // client on one backend across workers and ports.
  const clients = Array.from({ length: 24 }, (_, i) => `127.0.8.${i + 1}`)
  const seen = new Map<string, Set<string>>()
  for (let round = 0; round < 3; round++) {
    const got = await mapLimit(clients, 8, async c => [c, await request(round % 2 === 0 ? portA : portB, c), await request(round % 2 === 0 ? portB : portA, c)] as const)
    for (const [c, x, y] of got) {
      const s = seen.get(c) ?? new Set<string>()
      s.add(x)
      s.add(y)
      seen.set(c, s)
    }
  }
  for (const [c, s] of seen) t.equal(s.size, 1, `${c} always reached ${[...s].join(', ')} (6 connections, 2 ports, 2 workers)`)
  const used = new Set([...seen.values()].map(s => [...s][0]))
  t.equal(used.size, 3, 'round robin spread the clients over all three backends')
  const pids = new Set(lb.lines.filter(l => l.msg === 'connection closed').map(l => l.pid))
  t.ok(pids.size >= 2, `both workers accepted connections (pids ${[...pids].join(', ')})`)

  const s = (await adminRequest(admin, 'GET', '/status')).json() as Status
  const shared = s.pools.find(p => p.name === 'shared')!
  t.equal(shared.persistence.size, clients.length, 'one entry per client in the pool, held by the primary')
  t.equal(shared.backends.reduce((n, b) => n + b.total, 0), clients.length * 6, 'backend totals of the pool sum over both workers')
  t.equal(shared.backends.reduce((n, b) => n + b.active, 0), 0, 'no lease left open')
  t.same(s.frontends.map(f => [f.name, f.total, f.pools]), [['a', clients.length * 3, ['shared']], ['b', clients.length * 3, ['other', 'shared']]])

  t.equal(await request(portB, '127.0.9.1'), 'x1', 'the lab route goes to pool other')
  const since = lb.mark()
  writeConfig(t, config('shared'), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const after = await mapLimit([1, 2, 3, 4, 5, 6], 3, () => request(portB, '127.0.9.1'))
  t.ok(after.every(n => /^w[123]$/.test(n)) && new Set(after).size === 1, `after the reload every worker sends the lab to pool shared, one backend (${after.join(', ')})`)
})
