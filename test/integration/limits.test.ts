/**
 * Admission and eligibility (SPEC §1 steps 1, 2, 5): frontend and backend
 * max_connections, allow/deny, weight 0, backup backends.
 */
import t from 'tap'
import { connectFrom, readGreeting, request, startNamedBackend, writeConfig, type Backend } from '../helpers'
import { closedLine, drainUntilClose, entries, explain, mapLimit, oneFrontend, startLb, waitUntilUp } from '../util/integration'

t.test('frontend max_connections 2: a third concurrent connection is refused (over_limit)', async t => {
  const backend = await startNamedBackend(t, 'b1')
  const { lb, port } = await startLb(t, oneFrontend(entries([backend]), { max_connections: 2 }))
  const held = await Promise.all(['127.0.11.1', '127.0.11.2'].map(c => connectFrom(port, c)))
  for (const s of held) t.teardown(() => s.destroy())
  for (const s of held) t.equal(await readGreeting(s), 'b1', 'a connection within the limit is served')

  const since = lb.mark()
  const third = await connectFrom(port, '127.0.11.3')
  t.teardown(() => third.destroy())
  const got = await drainUntilClose(third)
  t.equal(got.data.length, 0, 'the third connection is closed without a byte')
  const refused = await lb.waitForMsg('connection refused', { client: '127.0.11.3' }, { since })
  t.equal(refused.reason, 'over_limit', 'logged with reason over_limit')
  t.equal(backend.connections, 2, 'the backend never saw the third connection')

  // One closes: there is room again.
  const before = lb.mark()
  held[0]!.end()
  held[0]!.resume()
  await closedLine(lb, '127.0.11.1', before)
  t.equal(await request(port, '127.0.11.4'), 'b1', 'once one closed, a new connection is served')
})

t.test('backend max_connections 1: overflow for one connection, the entry stays', async t => {
  const backends = await Promise.all(['a', 'b', 'c'].map(n => startNamedBackend(t, n)))
  const byName = new Map<string, Backend>(backends.map(b => [b.name, b]))
  const client = '127.0.11.20'
  // Find the client's ring home first (ring points derive from names only), then cap it at one connection.
  const home = (await explain(writeConfig(t, oneFrontend(entries(backends))), client)).backend!
  const { lb, port } = await startLb(
    t,
    oneFrontend(entries(backends).map(b => (b.name === home ? { ...b, max_connections: 1 } : b))),
  )

  const first = await connectFrom(port, client)
  t.teardown(() => first.destroy())
  t.equal(await readGreeting(first), home, `first connection on the ring home ${home}`)
  const second = await connectFrom(port, client)
  t.teardown(() => second.destroy())
  const overflow = await readGreeting(second)
  t.not(overflow, home, `second concurrent connection overflows to ${overflow}: ${home} is full`)
  t.equal(byName.get(home)!.connections, 1, `${home} accepted one connection only`)

  const since = lb.mark()
  first.end()
  first.resume()
  const firstClosed = await closedLine(lb, client, since)
  t.equal(firstClosed.backend, home, `the first connection closed on ${home}`)
  // The second is still open on the overflow backend; the table still says home.
  t.equal(await request(port, client), home, `with room again, the client is back on ${home}: the entry was kept`)
  t.equal(await request(port, client), home, 'and stays there')
  second.end()
})

t.test('allow / deny: checked against the client address, deny wins', async t => {
  const backend = await startNamedBackend(t, 'b1')
  const { lb, port } = await startLb(
    t,
    oneFrontend(entries([backend]), { allow: ['127.0.12.0/24'], deny: ['127.0.12.66', '127.0.12.128/25'] }),
  )
  const cases: { client: string; served: boolean; why: string }[] = [
    { client: '127.0.12.5', served: true, why: 'in allow' },
    { client: '127.0.12.127', served: true, why: 'in allow, just below the denied /25' },
    { client: '127.0.12.66', served: false, why: 'denied host' },
    { client: '127.0.12.200', served: false, why: 'in the denied /25' },
    { client: '127.0.13.5', served: false, why: 'outside allow' },
  ]
  for (const c of cases) {
    const since = lb.mark()
    const sock = await connectFrom(port, c.client)
    t.teardown(() => sock.destroy())
    if (c.served) {
      t.equal(await readGreeting(sock), 'b1', `${c.client} (${c.why}) is served`)
      sock.destroy()
      continue
    }
    const got = await drainUntilClose(sock)
    t.equal(got.data.length, 0, `${c.client} (${c.why}) is closed without a byte`)
    const line = await lb.waitForMsg('connection refused', { client: c.client }, { since })
    t.equal(line.reason, 'denied', `${c.client}: logged "connection refused" with reason denied`)
  }
  t.equal(backend.connections, 2, 'only the two allowed clients reached the backend')
})

t.test('weight 0: takes no new keys, keeps the ones it has', async t => {
  const backends = await Promise.all(['a', 'b', 'zero'].map(n => startNamedBackend(t, n)))
  const config = (zeroWeight: number): Record<string, unknown> =>
    oneFrontend(entries(backends).map(b => (b.name === 'zero' ? { ...b, weight: zeroWeight } : b)))
  const { lb, port, file } = await startLb(t, config(0))
  const clients = Array.from({ length: 30 }, (_, i) => `127.0.14.${i + 1}`)
  const got = await mapLimit(clients, 8, c => request(port, c))
  t.equal(got.filter(n => n === 'zero').length, 0, 'no client on the weight-0 backend')
  t.same([...new Set(got)].sort(), ['a', 'b'], 'the others share the clients')
  t.equal(backends[2]!.connections, 0, 'the weight-0 backend saw no connection')

  // Weight 1 → clients of its own; back to 0 by reload: they stay, new keys still avoid it.
  let since = lb.mark()
  writeConfig(t, config(1), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const fresh = Array.from({ length: 30 }, (_, i) => `127.0.16.${i + 1}`)
  const placed = await mapLimit(fresh, 8, c => request(port, c))
  const onZero = fresh.filter((_, i) => placed[i] === 'zero')
  t.ok(onZero.length > 0, `with weight 1, new clients reach it (${onZero.length} of 30)`)
  since = lb.mark()
  writeConfig(t, config(0), { path: file })
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since })
  const again = await mapLimit(onZero, 8, c => request(port, c))
  t.same(again, onZero.map(() => 'zero'), 'back at weight 0, its existing clients keep it')
  const newer = await mapLimit(clients.map(c => c.replace('127.0.14.', '127.0.17.')), 8, c => request(port, c))
  t.equal(newer.filter(n => n === 'zero').length, 0, 'and new clients still avoid it')
})

t.test('backup: used only when every primary is down; a key returns to a primary', async t => {
  const primaries = await Promise.all(['p1', 'p2'].map(n => startNamedBackend(t, n)))
  const backup = await startNamedBackend(t, 'bk')
  const { lb, port } = await startLb(
    t,
    oneFrontend([...entries(primaries), { name: 'bk', address: backup.address, backup: true }], {
      passive: { max_fails: 1, fail_timeout: '1s' },
      retries: 2,
    }),
  )
  const clients = Array.from({ length: 20 }, (_, i) => `127.0.15.${i + 1}`)
  const first = await mapLimit(clients, 8, c => request(port, c))
  t.same([...new Set(first)].sort(), ['p1', 'p2'], 'with the primaries up, clients are on p1 and p2')
  t.equal(backup.connections, 0, 'the backup got nothing')

  const client = clients[0]!
  for (const p of primaries) p.stopListening()
  t.equal(await request(port, client), 'bk', `every primary down: ${client} fails over to the backup`)
  t.equal(await request(port, '127.0.15.99'), 'bk', 'a new client goes to the backup too')
  t.equal(await request(port, client), 'bk', `${client} stays on the backup while no primary is up`)

  // p1 comes back (p2 stays dead): the key leaves the backup at its next connection.
  const p1 = primaries[0]!
  await startNamedBackend(t, 'p1', { port: p1.port })
  await waitUntilUp(lb, 'p1')
  t.equal(await request(port, client), 'p1', `${client} returns to the primary p1 once it is back`)
  t.equal(await request(port, client), 'p1', 'and stays there')
})
