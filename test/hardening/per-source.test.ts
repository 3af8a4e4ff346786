/**
 * limits.per_source (SPEC §14): one address holding its share of
 * connections, or opening them too fast, is refused (`over_source_limit`)
 * while every other client is served; a source that closes one may open
 * one again; a bad rate is a config error with its path.
 */
import * as net from 'node:net'
import t from 'tap'
import { adminRequest, connectFrom, readLine, request, startNamedBackend } from '../helpers'
import { entries, mapLimit, oneFrontend, startLb } from '../util/integration'
import { errors } from '../util/config'

/** Connect from `from` and report whether the backend greeted (served) or l4lb closed it (refused). */
async function attempt(port: number, from: string): Promise<{ served: boolean; sock: net.Socket }> {
  const sock = await connectFrom(port, from)
  sock.on('error', () => undefined)
  const greeting = readLine(sock, 5_000).then(
    () => true,
    () => false,
  )
  return { served: await greeting, sock }
}

t.test('per_source.connections: a flooding source is refused, everyone else is served', async t => {
  const [a1, a2] = await Promise.all([startNamedBackend(t, 'a1'), startNamedBackend(t, 'a2')])
  const { lb, port } = await startLb(t, oneFrontend(entries([a1!, a2!]), { max_connections: 200, limits: { per_source: { connections: 100 } } }, { admin: { listen: '127.0.0.1:0' } }))
  const admin = await lb.adminPort()
  const since = lb.mark()
  // The flood: 150 connections held from one address (the limit is 100) ...
  const flood = await mapLimit(Array.from({ length: 150 }, (_, i) => i), 25, () => attempt(port, '127.0.7.1'))
  t.teardown(() => flood.forEach(f => f.sock.destroy()))
  const held = flood.filter(f => f.served).length
  t.equal(held, 100, 'the flooding source holds exactly its 100 connections')
  // ... while 100 other clients come and go.
  const legit = await mapLimit(Array.from({ length: 100 }, (_, i) => `127.0.8.${i + 1}`), 10, async c => (await attempt(port, c).then(r => (r.sock.destroy(), r.served))))
  const served = legit.filter(Boolean).length
  t.comment(`per-source flood: legitimate clients served during the flood: ${served} of ${legit.length} (${((100 * served) / legit.length).toFixed(1)}%)`)
  t.equal(served, 100, 'every legitimate client was served during the flood')
  await lb.waitFor(() => lb.lines.slice(since).filter(l => l.msg === 'connection refused' && l.reason === 'over_source_limit').length >= 50, { what: '50 over_source_limit refusals' })
  const refusedLines = lb.lines.slice(since).filter(l => l.msg === 'connection refused')
  t.ok(refusedLines.every(l => l.client === '127.0.7.1' && l.reason === 'over_source_limit'), 'only the flooding source was refused, as over_source_limit')
  const st = (await adminRequest(admin, 'GET', '/status')).json() as { frontends: { refused: Record<string, number> }[] }
  t.equal(st.frontends[0]!.refused.over_source_limit, 50, '/status counts them per frontend')
  // One of its connections closes: it may open one again.
  const open = flood.find(f => f.served)!
  const closedSince = lb.mark()
  open.sock.destroy()
  await lb.waitForMsg('connection closed', { client: '127.0.7.1' }, { since: closedSince })
  t.equal((await attempt(port, '127.0.7.1')).served, true, 'after one closes, the source is served again')
})

t.test('per_source.rate: too many new connections per second are refused', async t => {
  const [a1] = await Promise.all([startNamedBackend(t, 'a1')])
  const { lb, port } = await startLb(t, oneFrontend(entries([a1!]), { limits: { per_source: { rate: '3/s' } } }))
  const since = lb.mark()
  const burst: boolean[] = []
  for (let i = 0; i < 6; i++) burst.push(await request(port, '127.0.9.1').then(() => true, () => false))
  t.same(burst.slice(0, 3), [true, true, true], 'the first 3 of a burst are served')
  t.ok(burst.slice(3).includes(false), `then the source is refused (${burst.map(b => (b ? 'ok' : 'refused')).join(', ')})`)
  t.equal(await request(port, '127.0.9.2'), 'a1', 'another source is served meanwhile')
  await lb.waitForMsg('connection refused', { client: '127.0.9.1', reason: 'over_source_limit' }, { since })
})

t.test('per_source config errors', async t => {
  const fe = (per_source: unknown) => ({ frontends: [{ name: 'fe', listen: '127.0.0.1:1', limits: { per_source }, backends: [{ name: 'a', address: '127.0.0.1:2' }] }] })
  t.same(errors(fe({ rate: 'fast' })), [{ path: 'frontends[0].limits.per_source.rate', message: 'invalid rate "fast" (expected e.g. 50/s)' }])
  t.same(errors(fe({ connections: 0 })), [{ path: 'frontends[0].limits.per_source.connections', message: 'Too small: expected number to be >=1' }])
  t.same(errors(fe({ conections: 5 })), [{ path: 'frontends[0].limits.per_source.conections', message: 'unknown key' }])
})

