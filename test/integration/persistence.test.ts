/**
 * Session persistence by source address (SPEC §1 steps 3-5): a client keeps
 * reaching one backend; prefixes group clients; IPv6 keys.
 */
import * as net from 'node:net'
import t from 'tap'
import { request, startNamedBackend, waitForEvent } from '../helpers'
import { closedLine, closedLines, entries, explain, mapLimit, oneFrontend, startLb } from '../util/integration'

t.test('50 clients x 5 connections: each client always on one backend, all 3 used', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const { lb, port } = await startLb(t, oneFrontend(entries(backends)))
  const clients = Array.from({ length: 50 }, (_, i) => `127.0.0.${10 + i}`)
  // Clients in parallel, each client's 5 connections one after the other.
  const seen = await mapLimit(clients, 16, async client => {
    const names: string[] = []
    for (let k = 0; k < 5; k++) names.push(await request(port, client))
    return names
  })
  const placement = new Map<string, string>()
  clients.forEach((client, i) => {
    const names = seen[i]!
    t.same(new Set(names), new Set([names[0]]), `${client} reached one backend 5 times (got ${names.join(',')})`)
    placement.set(client, names[0]!)
  })
  const used = new Set(placement.values())
  t.same([...used].sort(), ['b1', 'b2', 'b3'], 'all three backends have clients')
  t.equal(
    backends.reduce((s, b) => s + b.connections, 0),
    250,
    'the backends accepted exactly 250 connections',
  )
  // The log agrees with what the clients read: key and backend of every connection.
  await lb.waitFor(() => lb.lines.filter(l => l.msg === 'connection closed').length >= 250, {
    what: '250 "connection closed" lines',
  })
  for (const client of clients) {
    const lines = closedLines(lb, client)
    t.equal(lines.length, 5, `${client}: 5 close records`)
    t.ok(
      lines.every(l => l.key === `ip:${client}` && l.key_source === 'socket' && l.backend === placement.get(client)),
      `${client}: logged with key ip:${client} and backend ${placement.get(client)}`,
    )
  }
})

t.test('ipv4_prefix 24 keeps a /24 together; different /24s may differ', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const { lb, port, file } = await startLb(t, oneFrontend(entries(backends), { affinity: { ipv4_prefix: 24 } }))
  const office = Array.from({ length: 20 }, (_, i) => `127.0.3.${i + 1}`)
  const names = await mapLimit(office, 8, client => request(port, client))
  const home = (await explain(file, '127.0.3.77')).backend
  t.same(new Set(names), new Set([home]), `all 20 clients of 127.0.3.0/24 on one backend, the ring's ${home}`)
  const line = await closedLine(lb, '127.0.3.1', 0)
  t.equal(line.key, 'ip:127.0.3.0/24', 'the key is the masked network')
  t.equal(line.backend, home, 'and logs the backend the clients read')

  // Ten other /24s, one client each: they spread over more than one backend.
  const nets = Array.from({ length: 10 }, (_, i) => `127.0.${4 + i}.9`)
  const others = await mapLimit(nets, 5, client => request(port, client))
  t.ok(new Set([...others, home]).size > 1, `different /24s reach different backends (got ${others.join(',')})`)
  const explained = await mapLimit(nets, 4, client => explain(file, client))
  nets.forEach((client, i) => t.equal(others[i], explained[i]!.backend, `${client} went where explain says`))
})

t.test('IPv6: l4lb on [::1]:0, a client from ::1, key ip:::1', async t => {
  const probe = net.createServer()
  try {
    probe.listen(0, '::1')
    await waitForEvent(probe, 'listening', 2_000)
  } catch {
    t.pass('no IPv6 loopback here', { skip: 'cannot bind ::1' })
    return
  } finally {
    probe.close()
  }
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const { lb, port } = await startLb(t, oneFrontend(entries(backends), { listen: ['[::1]:0'] }))
  const listening = await lb.waitForMsg('listening')
  t.equal(listening.address, '::1', 'the listening line names ::1')
  const first = await request(port, '::1', { host: '::1' })
  for (let k = 0; k < 3; k++) t.equal(await request(port, '::1', { host: '::1' }), first, `connection ${k + 2} on ${first}`)
  const line = await closedLine(lb, '::1', 0)
  t.equal(line.key, 'ip:::1', 'full-prefix IPv6 key carries no suffix')
  t.equal(line.backend, first, 'and logs the backend the client read')
})
