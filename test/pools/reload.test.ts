/**
 * Reloading pools and routes (SPEC §9): a reload adds a pool and a route,
 * removes a route, moves a route to another pool; entries of surviving
 * backends of surviving pools survive; and a listener keeps its socket when
 * the new config asks for the address it is bound to, however the old
 * config wrote it (port 0, rewritten with the real port).
 */
import t from 'tap'
import { adminRequest, request, startNamedBackend, writeConfig, type Backend, type TestLike } from '../helpers'
import { requestLogged, startLb } from '../util/integration'

async function named(t: TestLike, ...names: string[]): Promise<Backend[]> {
  return Promise.all(names.map(n => startNamedBackend(t, n)))
}

const pool = (name: string, bs: Backend[], extra: Record<string, unknown> = {}) => ({
  name,
  ...extra,
  backends: bs.map(b => ({ name: b.name, address: b.address })),
})

t.test('reload adds a pool and a route, removes a route, moves a route; entries survive', async t => {
  const [a1, a2, b1, c1] = await named(t, 'a1', 'a2', 'b1', 'c1')
  const admin = { listen: '127.0.0.1:0' }
  const config = (routes: unknown[], pools: unknown[]) => ({ admin, shutdown_grace: '2s', pools, frontends: [{ name: 'fe', listen: '127.0.0.1:0', routes }] })
  const poolsAB = [pool('a', [a1!, a2!]), pool('b', [b1!])]
  const { lb, port, file } = await startLb(t, config([{ name: 'office', match: { source: '127.0.1.0/24' }, pool: 'a' }, { pool: 'b' }], poolsAB), 'fe')
  const adminPort = await lb.adminPort()

  const office = ['127.0.1.1', '127.0.1.2', '127.0.1.3', '127.0.1.4', '127.0.1.5', '127.0.1.6']
  const first = new Map<string, string>()
  for (const c of office) {
    const { name, line } = await requestLogged(lb, port, c)
    t.match(name, /^a[12]$/, `${c} goes to pool a (${name})`)
    t.same([line.pool, line.route], ['a', 'office'], `${c}: pool and route are logged`)
    first.set(c, name)
  }
  t.equal((await requestLogged(lb, port, '127.0.2.1')).line.pool, 'b', 'a client outside the office: the default route')
  t.same((await requestLogged(lb, port, '127.0.2.1')).line.route, '1', 'an unnamed route is logged by its index')

  // 1. Add pool c and a route to it, ahead of the default.
  let since = lb.mark()
  writeConfig(t, config([{ name: 'office', match: { source: '127.0.1.0/24' }, pool: 'a' }, { name: 'lab', match: { source: '127.0.2.0/24' }, pool: 'c' }, { pool: 'b' }], [...poolsAB, pool('c', [c1!])]), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const lab = await requestLogged(lb, port, '127.0.2.1')
  t.same([lab.name, lab.line.pool, lab.line.route], ['c1', 'c', 'lab'], 'the new route sends the lab to the new pool')
  for (const c of office) t.equal(await request(port, c), first.get(c), `${c} kept ${first.get(c)} across the reload`)
  const status = (await adminRequest(adminPort, 'GET', '/status')).json() as { pools: { name: string }[]; frontends: { pools: string[] }[] }
  t.same(status.pools.map(p => p.name), ['a', 'b', 'c'], '/status lists the new pool')
  t.same(status.frontends[0]!.pools, ['a', 'c', 'b'], 'the frontend reaches a, c and b')

  // 2. Remove the office route: the office goes to the default; pool a (still configured) keeps its entries.
  since = lb.mark()
  writeConfig(t, config([{ name: 'lab', match: { source: '127.0.2.0/24' }, pool: 'c' }, { pool: 'b' }], [...poolsAB, pool('c', [c1!])]), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  t.equal(await request(port, office[0]!), 'b1', 'without its route the office reaches the default pool')
  const entries = (await adminRequest(adminPort, 'GET', '/persistence/a')).json() as { entries: { key: string; backend: string }[] }
  t.same(
    entries.entries.map(e => [e.key, e.backend]).sort(),
    office.map(c => [`ip:${c}`, first.get(c)]).sort(),
    'pool a still holds every office entry (its backends survived)',
  )

  // 3. Move the lab route to pool a: the lab reaches a; then bring the office route back: entries are still honoured.
  since = lb.mark()
  writeConfig(t, config([{ name: 'office', match: { source: '127.0.1.0/24' }, pool: 'a' }, { name: 'lab', match: { source: '127.0.2.0/24' }, pool: 'a' }, { pool: 'b' }], [...poolsAB, pool('c', [c1!])]), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const moved = await requestLogged(lb, port, '127.0.2.1')
  t.same([moved.line.pool, moved.line.route], ['a', 'lab'], 'the moved route sends the lab to pool a')
  t.match(moved.name, /^a[12]$/)
  for (const c of office) t.equal(await request(port, c), first.get(c), `${c} is back on ${first.get(c)}: its entry survived two reloads`)

  // 4. Remove backend a2 from pool a: only its keys move; a1's entries stay.
  since = lb.mark()
  writeConfig(t, config([{ name: 'office', match: { source: '127.0.1.0/24' }, pool: 'a' }, { pool: 'b' }], [pool('a', [a1!]), pool('b', [b1!])]), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  for (const c of office) t.equal(await request(port, c), 'a1', `${c} on a1 (${first.get(c) === 'a1' ? 'kept' : 'moved from a2'})`)
  const left = (await adminRequest(adminPort, 'GET', '/persistence/c')).status
  t.equal(left, 404, 'the removed pool c is gone from the admin API')
})

t.test('a listener keeps its socket when port 0 is rewritten as the real port', async t => {
  const [x] = await named(t, 'x1')
  const fe = (listen: string) => ({ shutdown_grace: '2s', frontends: [{ name: 'fe', listen, backends: [{ name: 'x1', address: x!.address }] }] })
  const { lb, port, file } = await startLb(t, fe('127.0.0.1:0'), 'fe')
  t.equal(await request(port, '127.0.3.1'), 'x1')
  const since = lb.mark()
  writeConfig(t, fe(`127.0.0.1:${port}`), { path: file })
  lb.kill('SIGHUP')
  const done = await lb.waitFor(l => l.msg === 'reloaded' || l.msg === 'reload failed', { since, what: 'the reload outcome' })
  t.equal(done.msg, 'reloaded', `reloaded (not ${JSON.stringify(done.errors ?? null)})`)
  t.notOk(lb.lines.slice(since).some(l => l.msg === 'listening'), 'no new socket was bound')
  t.equal(await request(port, '127.0.3.1'), 'x1', 'the same socket still serves')

  // And back to port 0: the frontend's socket (first written as port 0) is kept again.
  const since2 = lb.mark()
  writeConfig(t, fe('127.0.0.1:0'), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since: since2 })
  t.notOk(lb.lines.slice(since2).some(l => l.msg === 'listening'), 'no new socket was bound')
  t.equal(await request(port, '127.0.3.1'), 'x1', 'the same socket still serves')
})
