/**
 * `workers: 2` (SPEC §7): worker processes serve one shared listening
 * socket; persistence is exact across them (round_robin placement, which
 * two separate tables would not agree on); first placement is atomic;
 * /status and /metrics are exact sums; a SIGHUP reload reaches every
 * worker; SIGTERM exits 0 and leaves no worker behind.
 */
import * as net from 'node:net'
import t from 'tap'
import {
  adminRequest,
  connectFrom,
  readLine,
  request,
  runL4lb,
  startNamedBackend,
  writeConfig,
  type LogLine,
} from '../helpers'
import { entries, mapLimit } from '../util/integration'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
}

interface Status {
  frontends: { name: string; listen: string[]; total: number; backends: { name: string; total: number }[] }[]
}

t.test('workers: 2', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  // round_robin with source_ip affinity: a new key's backend depends on the
  // counter of whoever places it, so only one shared table keeps a client
  // on one backend whichever worker accepts its connections.
  const config = (bs: typeof backends): Record<string, unknown> => ({
    workers: 2,
    shutdown_grace: '2s',
    admin: { listen: '127.0.0.1:0' },
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], balance: { algorithm: 'round_robin' }, backends: entries(bs) }],
  })
  const file = writeConfig(t, config(backends))
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening('fe')
  const admin = await lb.adminPort()
  await lb.waitForMsg('workers ready', { workers: 2 })
  let made = 0
  const closed = (): LogLine[] => lb.lines.filter(l => l.msg === 'connection closed' && l.frontend === 'fe')
  const workerPids = new Set<number>()

  await t.test('port 0: one listening socket (both workers accept on it: see below)', async t => {
    t.equal(lb.lines.filter(l => l.msg === 'listening' && l.frontend === 'fe').length, 1, 'one "listening" line for fe')
    const s = (await adminRequest(admin, 'GET', '/status')).json() as Status
    t.same(s.frontends[0]!.listen, [`127.0.0.1:${port}`], '/status lists the one bound address')
  })

  await t.test('30 clients x 6 connections: each client on one backend whichever worker accepts', async t => {
    const clients = Array.from({ length: 30 }, (_, i) => `127.0.12.${i + 1}`)
    const seen = new Map<string, string[]>(clients.map(c => [c, []]))
    for (let round = 0; round < 6; round++) {
      const got = await mapLimit(clients, 15, c => request(port, c))
      clients.forEach((c, i) => seen.get(c)!.push(got[i]!))
      made += clients.length
    }
    const split = clients.filter(c => new Set(seen.get(c)).size !== 1).map(c => `${c}: ${seen.get(c)!.join(',')}`)
    t.same(split, [], 'every client reached one backend 6 times')
    t.same(new Set(clients.map(c => seen.get(c)![0])), new Set(['b1', 'b2', 'b3']), 'round_robin used all three backends')

    await lb.waitFor(() => closed().length >= made, { what: `${made} "connection closed" lines` })
    const lines = closed()
    for (const l of lines) workerPids.add(l.pid as number)
    t.equal(workerPids.size, 2, `two worker pids served connections: ${[...workerPids].join(', ')}`)
    t.notOk(workerPids.has(lb.pid), 'not the primary')
    const byClient = new Map<string, Set<number>>()
    for (const l of lines) {
      const set = byClient.get(l.client as string) ?? new Set<number>()
      set.add(l.pid as number)
      byClient.set(l.client as string, set)
    }
    const both = clients.filter(c => byClient.get(c)?.size === 2)
    t.ok(both.length > 0, `${both.length} clients had connections accepted by both workers`)
    const mismatch = lines.filter(l => l.backend !== seen.get(l.client as string)![0])
    t.equal(mismatch.length, 0, 'the logged backend of every connection is its client\'s one backend')
  })

  await t.test('30 simultaneous first connections of one client reach one backend', async t => {
    const sockets: net.Socket[] = []
    t.teardown(() => sockets.forEach(s => s.destroy()))
    const opened = await Promise.all(Array.from({ length: 30 }, () => connectFrom(port, '127.0.13.1')))
    sockets.push(...opened)
    made += 30
    const names = await Promise.all(sockets.map(s => readLine(s)))
    t.same([...new Set(names)], [names[0]], `all 30 on ${names[0]} (got ${names.join(',')})`)
    for (const s of sockets) s.end()
    await lb.waitFor(() => closed().length >= made, { what: `${made} "connection closed" lines` })
    const pids = new Set(closed().filter(l => l.client === '127.0.13.1').map(l => l.pid as number))
    t.pass(`accepted by ${pids.size} worker(s)`)
  })

  await t.test('/status and /metrics count every connection once', async t => {
    const s = (await adminRequest(admin, 'GET', '/status')).json() as Status
    const fe = s.frontends[0]!
    t.equal(fe.total, made, `/status total is ${made}, the connections made`)
    t.equal(fe.backends.reduce((a, b) => a + b.total, 0), made, 'the backends\' totals add up to it')
    const real = backends.reduce((a, b) => a + b.connections, 0)
    t.equal(real, made, 'and the backend servers saw as many')
    for (const b of fe.backends) t.equal(b.total, backends.find(x => x.name === b.name)!.connections, `${b.name}: total matches its server`)
    const metrics = (await adminRequest(admin, 'GET', '/metrics')).text
    const m = /^l4lb_connections_total\{frontend="fe"\} (\d+)$/m.exec(metrics)
    t.ok(m, 'l4lb_connections_total{frontend="fe"} is exported')
    t.equal(Number(m?.[1]), made, `/metrics l4lb_connections_total is ${made}`)
  })

  await t.test('SIGHUP reload removing b3: no connection reaches b3 afterwards', async t => {
    writeConfig(t, config(backends.slice(0, 2)), { path: file })
    const m = lb.mark()
    lb.kill('SIGHUP')
    await lb.waitForMsg('reloaded', {}, { since: m })
    const b3Before = backends[2]!.connections
    const after = lb.mark()
    // Clients old and new, in parallel so both workers accept some.
    const clients = [
      ...Array.from({ length: 30 }, (_, i) => `127.0.12.${i + 1}`),
      ...Array.from({ length: 30 }, (_, i) => `127.0.14.${i + 1}`),
    ]
    const got = await mapLimit(clients, 15, c => request(port, c))
    made += clients.length
    t.notOk(got.includes('b3'), `none of ${clients.length} connections went to b3 (got ${[...new Set(got)].join(', ')})`)
    t.equal(backends[2]!.connections, b3Before, 'b3 accepted nothing after the reload')
    await lb.waitFor(() => closed().length >= made, { what: `${made} "connection closed" lines` })
    const pids = new Set(lb.lines.slice(after).filter(l => l.msg === 'connection closed').map(l => l.pid as number))
    t.equal(pids.size, 2, 'both workers served connections after the reload')
    const s = (await adminRequest(admin, 'GET', '/status')).json() as Status
    t.same(s.frontends[0]!.backends.map(b => b.name), ['b1', 'b2'], '/status lists b1 and b2 only')
  })

  await t.test('SIGTERM: exit 0, no worker left behind', async t => {
    const pids = new Set<number>(workerPids)
    for (const l of lb.lines) if (l.msg === 'connection closed') pids.add(l.pid as number)
    t.ok(pids.size >= 2, `worker pids seen: ${[...pids].join(', ')}`)
    t.ok([...pids].every(alive), 'the workers run before the stop')
    const exit = await lb.stop('SIGTERM')
    t.same(exit, { code: 0, signal: null }, 'exit code 0')
    t.same([...pids].filter(alive), [], 'no worker process is left')
    t.notOk(alive(lb.pid), 'the primary is gone')
  })
})
