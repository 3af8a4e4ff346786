/**
 * Re-stick policy (SPEC §6 `persistence.on_recovery`) and eviction by
 * backend (`DELETE /persistence/:frontend?backend=NAME`).
 *
 * A client is placed on its ring home H; H goes away (disabled through the
 * admin API, or its server stopped and an active check marking it down);
 * the client fails over to another backend; H comes back. With `stay` the
 * client's next connection stays where failover put it; with `return` it
 * goes back to H.
 */
import t from 'tap'
import { adminRequest, request, runL4lb, startNamedBackend, writeConfig, type Backend } from '../helpers'
import { entries } from '../util/integration'

interface Scenario {
  policy: 'stay' | 'return'
  /** How H goes away and comes back. */
  via: 'admin' | 'health'
  /** Backends of the client's connections: before, while H is away, after H is back. 'H' is its home. */
  expect: ['H', 'other', 'H' | 'other']
}

const scenarios: Scenario[] = [
  { policy: 'stay', via: 'admin', expect: ['H', 'other', 'other'] },
  { policy: 'return', via: 'admin', expect: ['H', 'other', 'H'] },
  { policy: 'stay', via: 'health', expect: ['H', 'other', 'other'] },
  { policy: 'return', via: 'health', expect: ['H', 'other', 'H'] },
]

const TOKEN = 's3cret'

for (const sc of scenarios) {
  t.test(`on_recovery: ${sc.policy}, home taken away and back by ${sc.via}: ${sc.expect.join(' -> ')}`, async t => {
    const backends: Backend[] = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
    const fe: Record<string, unknown> = {
      name: 'fe',
      listen: ['127.0.0.1:0'],
      persistence: { on_recovery: sc.policy },
      backends: entries(backends),
    }
    if (sc.via === 'health') fe.health_check = { interval: '100ms', timeout: '200ms', rise: 1, fall: 1 }
    const file = writeConfig(t, { shutdown_grace: '1s', admin: { listen: '127.0.0.1:0', token: TOKEN }, frontends: [fe] })
    const lb = runL4lb(t, ['run', '-c', file])
    const port = await lb.listening()
    const admin = await lb.adminPort()
    const client = '127.0.10.7'

    const seen: string[] = []
    const home = await request(port, client)
    seen.push(home)
    const hi = backends.findIndex(b => b.name === home)
    const hb = backends[hi]!

    // H goes away.
    if (sc.via === 'admin') {
      const r = await adminRequest(admin, 'POST', `/backends/fe/${home}/disable`, { token: TOKEN })
      t.equal(r.status, 200, `${home} disabled`)
    } else {
      const m = lb.mark()
      await hb.close()
      await lb.waitForMsg('backend down', { backend: home }, { since: m })
    }
    const away = await request(port, client)
    seen.push(away)

    // H comes back.
    if (sc.via === 'admin') {
      const r = await adminRequest(admin, 'POST', `/backends/fe/${home}/enable`, { token: TOKEN })
      t.equal(r.status, 200, `${home} enabled`)
    } else {
      const m = lb.mark()
      backends[hi] = await startNamedBackend(t, home, { port: hb.port })
      await lb.waitForMsg('backend up', { backend: home }, { since: m })
    }
    const after = await request(port, client)
    seen.push(after)
    // And the next one agrees: the decision is written back to the table.
    const again = await request(port, client)

    const got = seen.map(b => (b === home ? 'H' : 'other'))
    t.same(got, sc.expect, `${client}: ${seen.join(' -> ')} (home ${home})`)
    t.equal(again, after, `the connection after that stays on ${after}`)
    const entry = (await adminRequest(admin, 'GET', `/persistence/fe?key=ip:${client}`)).json() as { entries: { backend: string }[] }
    t.equal(entry.entries[0]?.backend, after, `the table entry says ${after}`)
  })
}

t.test('DELETE /persistence/fe?backend=NAME removes exactly that backend\'s entries', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const file = writeConfig(t, {
    shutdown_grace: '1s',
    admin: { listen: '127.0.0.1:0', token: TOKEN },
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], backends: entries(backends) }],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening()
  const admin = await lb.adminPort()
  const clients = Array.from({ length: 30 }, (_, i) => `127.0.11.${i + 1}`)
  for (const c of clients) await request(port, c)

  type Entries = { entries: { key: string; backend: string }[] }
  const list = async (): Promise<string[]> =>
    ((await adminRequest(admin, 'GET', '/persistence/fe')).json() as Entries).entries.map(e => `${e.key}=${e.backend}`).sort()
  const before = await list()
  t.equal(before.length, 30, '30 entries')
  const ofB2 = before.filter(e => e.endsWith('=b2'))
  t.ok(ofB2.length > 0 && ofB2.length < 30, `${ofB2.length} of them on b2`)

  const unauth = await adminRequest(admin, 'DELETE', '/persistence/fe?backend=b2')
  t.equal(unauth.status, 401, 'without the token: 401')
  t.same(await list(), before, 'and nothing was removed')

  const r = await adminRequest(admin, 'DELETE', '/persistence/fe?backend=b2', { token: TOKEN })
  t.equal(r.status, 200, 'with the token: 200')
  t.same(r.json(), { deleted: ofB2.length }, `answers {deleted: ${ofB2.length}}`)
  t.same(await list(), before.filter(e => !e.endsWith('=b2')), "exactly b2's entries are gone; b1's and b3's stay")

  const again = await adminRequest(admin, 'DELETE', '/persistence/fe?backend=b2', { token: TOKEN })
  t.same([again.status, again.json()], [200, { deleted: 0 }], 'a second eviction of b2 deletes nothing')

  const unknown = await adminRequest(admin, 'DELETE', '/persistence/fe?backend=nope', { token: TOKEN })
  t.equal(unknown.status, 404, 'an unknown backend: 404')
  t.match(unknown.json(), { error: /nope/ }, 'with an error naming it')
  t.same(await list(), before.filter(e => !e.endsWith('=b2')), 'and the table is unchanged')

  const noFe = await adminRequest(admin, 'DELETE', '/persistence/nofe?backend=b1', { token: TOKEN })
  t.equal(noFe.status, 404, 'an unknown frontend: 404')
})
