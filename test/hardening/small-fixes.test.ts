/**
 * Issue 11's smaller corrections, end to end: a draining backend takes new
 * keys as the last resort (logged); an entry deleted while its key has a
 * connection open is pinned again by the next connection and never expires
 * under it; an untrusted PROXY signature under `accept_proxy: optional` is a
 * `connection refused` line.
 */
import t from 'tap'
import { adminRequest, connectFrom, readLine, startNamedBackend, waitForEvent } from '../helpers'
import { entries, oneFrontend, startLb } from '../util/integration'

const TOKEN = 't0ken'

t.test('draining is the last resort, not a refusal', async t => {
  const [a1, a2] = await Promise.all([startNamedBackend(t, 'a1'), startNamedBackend(t, 'a2')])
  const { lb, port } = await startLb(t, oneFrontend(entries([a1!, a2!]), {}, { admin: { listen: '127.0.0.1:0', token: TOKEN } }))
  const admin = await lb.adminPort()
  const post = (path: string) => adminRequest(admin, 'POST', path, { token: TOKEN })
  t.equal((await post('/backends/fe/a1/drain')).status, 200)
  t.equal((await post('/backends/fe/a2/disable')).status, 200)
  const since = lb.mark()
  const s = await connectFrom(port, '127.0.4.1')
  t.teardown(() => s.destroy())
  t.equal(await readLine(s), 'a1', 'the only backend left is draining: it serves the new client')
  const warned = await lb.waitForMsg('placed on draining backend: last resort', { pool: 'fe', backend: 'a1', key: 'ip:127.0.4.1' }, { since })
  t.equal(warned.level, 40, 'logged at warn')
  t.equal((await post('/backends/fe/a2/enable')).status, 200)
  const s2 = await connectFrom(port, '127.0.4.2')
  t.teardown(() => s2.destroy())
  t.equal(await readLine(s2), 'a2', 'once a normal backend is back, new keys go there')
})

t.test('DELETE while a connection is open: the next connection is pinned and never expires under it', async t => {
  const [a1] = await Promise.all([startNamedBackend(t, 'a1')])
  const { lb, port } = await startLb(t, oneFrontend(entries([a1!]), { persistence: { ttl: '1s' } }, { admin: { listen: '127.0.0.1:0', token: TOKEN } }))
  const admin = await lb.adminPort()
  const get = async () => (await adminRequest(admin, 'GET', '/persistence/fe?key=ip:127.0.5.1')).json() as { entries: { connections: number; expires_at: string | null }[] }
  const a = await connectFrom(port, '127.0.5.1')
  t.teardown(() => a.destroy())
  await readLine(a)
  t.equal((await adminRequest(admin, 'DELETE', '/persistence/fe?key=ip:127.0.5.1', { token: TOKEN })).status, 200, 'DELETE with A open')
  const b = await connectFrom(port, '127.0.5.1')
  t.teardown(() => b.destroy())
  await readLine(b)
  const since = lb.mark()
  a.destroy()
  await lb.waitForMsg('connection closed', { client: '127.0.5.1' }, { since })
  t.same((await get()).entries.map(e => [e.connections, e.expires_at]), [[1, null]], 'A closed, B open: one connection, no expiry')
  // Past the 1 s ttl, B still open: the entry is still there (wait for a later event, not a sleep: B's own echo).
  const start = Date.now()
  while (Date.now() - start < 1500) {
    b.write('ping\n')
    await readLine(b)
  }
  t.same((await get()).entries.map(e => [e.connections, e.expires_at]), [[1, null]], 'a ttl later, B still holds it')
  const since2 = lb.mark()
  b.end()
  await waitForEvent(b, 'close')
  await lb.waitForMsg('connection closed', { client: '127.0.5.1' }, { since: since2 })
  const after = (await get()).entries
  t.equal(after[0]!.connections, 0, 'B closed')
  t.type(after[0]!.expires_at, 'string', 'now it expires')
})

t.test('an untrusted PROXY signature under accept_proxy: optional is a refusal', async t => {
  const [a1] = await Promise.all([startNamedBackend(t, 'a1')])
  const { lb, port } = await startLb(t, oneFrontend(entries([a1!]), { accept_proxy: 'optional', trusted_proxies: ['127.0.0.250'] }))
  const since = lb.mark()
  const s = await connectFrom(port, '127.0.6.1')
  s.on('error', () => undefined)
  s.write('PROXY TCP4 203.0.113.9 127.0.0.1 5555 7000\r\nhello\n')
  await waitForEvent(s, 'close')
  const line = await lb.waitFor(l => (l.msg === 'connection refused' || l.msg === 'connection closed') && l.client === '127.0.6.1', { since, what: 'the line for 127.0.6.1' })
  t.same([line.msg, line.reason], ['connection refused', 'untrusted_proxy'], 'logged as a refusal with its reason')
  t.notOk(lb.lines.slice(since).some(l => l.msg === 'connection closed' && l.client === '127.0.6.1'), 'and no close line')
})
