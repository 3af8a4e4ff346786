/**
 * Persistence beats the ring (SPEC §1, "Once a key is placed ... stays where
 * the table says"): a client failed over from its ring home stays on the
 * new backend after the home recovers, until its entry expires; an entry
 * never expires while the key has a connection open. And `l4lb explain`
 * agrees with where real new clients go.
 */
import t from 'tap'
import { connectFrom, readGreeting, request, startNamedBackend, type Backend, type LogLine } from '../helpers'
import { closedLine, elapse, entries, explain, mapLimit, oneFrontend, requestLogged, startLb, waitUntilUp } from '../util/integration'

const TTL_MS = 3000

t.test('failed over to B2, home B1 recovers: stays on B2 until the entry expires, then back to B1', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const byName = new Map<string, Backend>(backends.map(b => [b.name, b]))
  const { lb, port, file } = await startLb(
    t,
    oneFrontend(entries(backends), {
      persistence: { ttl: `${TTL_MS}ms` },
      passive: { max_fails: 1, fail_timeout: '500ms' },
      retries: 2,
    }),
  )
  // The client and, for probing B1's recovery, a fresh client with the same ring home.
  const client = '127.0.7.1'
  const homeName = (await explain(file, client)).backend!
  let probe: string | undefined
  for (let i = 2; i <= 30 && probe === undefined; i += 4) {
    const batch = [i, i + 1, i + 2, i + 3].map(k => `127.0.7.${k}`)
    const homes = await Promise.all(batch.map(c => explain(file, c)))
    probe = batch.find((_, k) => homes[k]!.backend === homeName)
  }
  if (probe === undefined) throw new Error(`no client in 127.0.7.2-30 shares ${client}'s ring home ${homeName}`)
  const home = byName.get(homeName)!

  // Every request of `client` waits for its own close record, so each later mark() is clean.
  const visit = (): Promise<{ name: string; line: LogLine }> => requestLogged(lb, port, client)
  const start = await visit()
  t.equal(start.name, homeName, `${client} starts on its ring home ${homeName}`)
  t.equal(start.line.backend, homeName, 'and is logged there')

  // The home stops listening: the next connection fails over.
  const beforeStop = lb.mark()
  home.stopListening()
  const moved = await visit()
  const failedOver = moved.name
  t.not(failedOver, homeName, `with ${homeName} down, ${client} is carried to another backend (${failedOver})`)
  t.equal(moved.line.backend, failedOver, 'the close record names the new backend')
  await lb.waitForMsg('backend down', { backend: homeName }, { since: beforeStop })

  // The home comes back on its port and is eligible again (passive fail_timeout ran out).
  await startNamedBackend(t, homeName, { port: home.port })
  await waitUntilUp(lb, homeName)
  t.equal(await request(port, probe), homeName, `${homeName} is back: a new client of that ring home reaches it`)

  for (let k = 0; k < 3; k++) {
    t.equal((await visit()).name, failedOver, `${homeName} is back, yet ${client} stays on ${failedOver} (${k + 1})`)
  }

  // A connection held open past the ttl keeps the entry alive.
  const held = await connectFrom(port, client)
  t.teardown(() => held.destroy())
  t.equal(await readGreeting(held), failedOver, 'the held connection is on the failover backend')
  await elapse(TTL_MS + 700)
  t.equal((await visit()).name, failedOver, `after ${TTL_MS + 700}ms with a connection open: still ${failedOver}`)
  const beforeRelease = lb.mark()
  held.end()
  held.resume()
  await closedLine(lb, client, beforeRelease)

  // All connections closed: once the ttl has run, the key is placed again by the ring.
  await elapse(TTL_MS + 700)
  const back = await visit()
  t.equal(back.name, homeName, `entry expired: ${client} is back on its ring home ${homeName}`)
  t.equal(back.line.backend, homeName, 'and the log says so')
})

t.test('explain --json agrees with where 20 new clients go', async t => {
  const backends = await Promise.all(['alpha', 'bravo', 'charlie', 'delta'].map(n => startNamedBackend(t, n)))
  const { port, file } = await startLb(
    t,
    oneFrontend([...entries(backends.slice(0, 3)), { name: 'delta', address: backends[3]!.address, weight: 2 }]),
  )
  const clients = Array.from({ length: 20 }, (_, i) => `127.0.8.${i + 1}`)
  const explained = await mapLimit(clients, 4, c => explain(file, c))
  const actual = await mapLimit(clients, 8, c => request(port, c))
  clients.forEach((c, i) => {
    t.equal(explained[i]!.key, `ip:${c}`, `explain names the key of ${c}`)
    t.equal(actual[i], explained[i]!.backend, `${c}: explain says ${explained[i]!.backend}, the connection reached ${actual[i]}`)
  })
  t.ok(new Set(actual).size >= 3, `the 20 clients spread over several backends (${[...new Set(actual)].join(',')})`)
})
