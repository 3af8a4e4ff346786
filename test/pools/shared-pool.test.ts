/**
 * SPEC §9 pools shared and keyed:
 *  (a) an `sni` route into a pool whose own key is `sni`: each server name
 *      keeps one backend whatever the client address, the close line's key is
 *      `sni:<name>`, the names spread, and explain agrees;
 *  (b) two frontends naming one pool share its table: one client, one
 *      backend through both; a failover through one port is honoured through
 *      the other; the admin API lists and forgets the entry once for both;
 *      /status lists the pool once and each frontend's pools as ["shared"];
 *  (c) a pool reached from two frontends is health-checked once: one
 *      `backend down` line (with the pool's name) for its dead backend, and
 *      no more checks of its live backend than of a pool behind one frontend.
 */
import * as tls from 'node:tls'
import { Duplex } from 'node:stream'
import t from 'tap'
import {
  adminRequest,
  connectFrom,
  refusingAddress,
  request,
  runCli,
  runL4lb,
  startNamedBackend,
  withTimeout,
  writeConfig,
  type Backend,
  type LogLine,
} from '../helpers'
import { closedLine, explain, mapLimit, requestLogged } from '../util/integration'

const entry = (b: Backend): { name: string; address: string } => ({ name: b.name, address: b.address })

/**
 * A node:tls client from `from` with server name `sni`, over a Duplex so the
 * test reads the raw bytes: the plain-TCP backend's greeting (its name).
 */
async function tlsGreeting(port: number, from: string, sni: string): Promise<string> {
  const raw = await connectFrom(port, from)
  raw.on('error', () => undefined)
  const wire = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      raw.write(chunk, () => cb())
    },
    final(cb) {
      raw.end()
      cb()
    },
    read() {},
  })
  let buf = Buffer.alloc(0)
  const line = withTimeout(
    new Promise<string>((resolve, reject) => {
      raw.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c])
        const nl = buf.indexOf(0x0a)
        if (nl >= 0) resolve(buf.subarray(0, nl).toString('latin1'))
        wire.push(c)
      })
      raw.once('close', () => reject(new Error(`closed before a greeting (got ${JSON.stringify(buf.toString('latin1'))})`)))
    }),
    5_000,
    `the greeting for ${sni} at ${from}`,
  )
  const sock = tls.connect({ socket: wire, servername: sni, rejectUnauthorized: false })
  sock.on('error', () => undefined) // the backend never sends a ServerHello
  try {
    return await line
  } finally {
    sock.destroy()
    raw.destroy()
  }
}

interface Entry {
  key: string
  backend: string
  [field: string]: unknown
}

t.test('pools shared by frontends, and sni routes into an sni-keyed pool', async t => {
  const pg = await Promise.all(['pg1', 'pg2', 'pg3'].map(n => startNamedBackend(t, n)))
  const rest = await startNamedBackend(t, 'rest1')
  const shared = await Promise.all(['s1', 's2', 's3'].map(n => startNamedBackend(t, n)))
  const file = writeConfig(t, {
    shutdown_grace: '1s',
    admin: { listen: '127.0.0.1:0' },
    pools: [
      { name: 'pg', affinity: { key: 'sni' }, backends: pg.map(entry) },
      { name: 'rest', backends: [entry(rest)] },
      { name: 'shared', affinity: { key: 'source_ip' }, backends: shared.map(entry) },
    ],
    frontends: [
      {
        name: 'tls',
        listen: '127.0.0.1:0',
        timeouts: { handshake: '5s' },
        routes: [
          { name: 'pg', match: { sni: '*.pg.example.com' }, pool: 'pg' },
          { pool: 'rest' },
        ],
      },
      { name: 'a', listen: '127.0.0.1:0', pool: 'shared' },
      { name: 'b', listen: '127.0.0.1:0', pool: 'shared' },
    ],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const tlsPort = await lb.listening('tls')
  const ports = { a: await lb.listening('a'), b: await lb.listening('b') }
  const admin = await lb.adminPort()

  await t.test('(a) *.pg.example.com → pool pg keyed by sni: one backend per name, whatever the client', async t => {
    const names = Array.from({ length: 12 }, (_, i) => `db${i + 1}.pg.example.com`)
    // each name three times: as is, upper case, with a trailing dot; each connection from its own address
    const conns = names.flatMap((name, i) =>
      [name, name.toUpperCase(), `${name}.`].map((sent, k) => ({ name, sent, from: `127.0.${10 + i}.${1 + 40 * k + i}` })),
    )
    const since = lb.mark()
    const got = await mapLimit(conns, 6, async c => ({ ...c, backend: await tlsGreeting(tlsPort, c.from, c.sent) }))
    const homes = new Map<string, Set<string>>()
    for (const c of got) {
      const line = await closedLine(lb, c.from, since, 5_000)
      t.match(
        line,
        { frontend: 'tls', route: 'pg', pool: 'pg', key: `sni:${c.name}`, key_source: 'sni', backend: c.backend },
        `${c.sent} from ${c.from}: answered by ${c.backend}, logged with key sni:${c.name}`,
      )
      if (!homes.has(c.name)) homes.set(c.name, new Set())
      homes.get(c.name)!.add(c.backend)
    }
    for (const [name, set] of homes) t.equal(set.size, 1, `${name} always reached one backend (${[...set].join(', ')})`)
    const used = new Set([...homes.values()].flatMap(s => [...s]))
    t.ok(used.size > 1, `12 names spread over ${used.size} backends (${[...used].join(', ')})`)

    // explain (ring placement with an empty table) agrees with where each name went
    const answers = await mapLimit(names, 2, async name => {
      const args = ['explain', '-c', file, '--frontend', 'tls', '--client', '127.0.0.99', '--sni', name, '--json']
      const r = await runCli(args)
      if (r.code !== 0) throw new Error(`explain exited ${r.code}: ${r.stderr}`)
      return JSON.parse(r.stdout) as Record<string, unknown>
    })
    names.forEach((name, i) =>
      t.match(answers[i], { route: 'pg', pool: 'pg', key: `sni:${name}`, backend: [...homes.get(name)!][0] }, `explain --sni ${name}`),
    )
  })

  await t.test('(b) two frontends, one pool: one table', async t => {
    const C = '127.0.3.7'
    const key = `ip:${C}`
    const through = async (fe: 'a' | 'b'): Promise<string> => {
      const { name, line } = await requestLogged(lb, ports[fe], C)
      t.match(line, { frontend: fe, pool: 'shared', route: null, key, backend: name }, `through ${fe}: ${name}, logged with pool shared and route null`)
      return name
    }
    const home = await through('a')
    t.equal((await explain(file, C, 'a')).backend, home, `${home} is the ring home of ${C}`)
    for (let i = 0; i < 2; i++) t.equal(await through('b'), home, `through b, the same backend as through a (${home})`)

    let list = (await adminRequest(admin, 'GET', '/persistence/shared')).json() as { entries: Entry[] }
    t.same(
      list.entries.map(e => [e.key, e.backend]),
      [[key, home]],
      'GET /persistence/shared: one entry, for the one client, on its backend',
    )

    // a failover through b rewrites the entry a reads
    t.equal((await adminRequest(admin, 'POST', `/backends/shared/${home}/disable`)).status, 200, `disable ${home}`)
    const moved = await through('b')
    t.not(moved, home, `with ${home} disabled, through b the client moved to ${moved}`)
    t.equal((await adminRequest(admin, 'POST', `/backends/shared/${home}/enable`)).status, 200, `enable ${home}`)
    t.equal(await through('a'), moved, `through a, the client stays on ${moved}, where b moved it`)

    list = (await adminRequest(admin, 'GET', `/persistence/shared?key=${encodeURIComponent(key)}`)).json() as { entries: Entry[] }
    t.same(list.entries.map(e => [e.key, e.backend]), [[key, moved]], `GET /persistence/shared?key=${key}: on ${moved}`)
    for (const fe of ['a', 'b']) {
      const r = await adminRequest(admin, 'GET', `/persistence/${fe}?key=${encodeURIComponent(key)}`)
      t.equal(r.status, 200, `GET /persistence/${fe}?key=... (a frontend with pool:) answers`)
      if (r.status === 200) t.same((r.json() as { entries: Entry[] }).entries.map(e => e.backend), [moved], `${fe} shows the same entry`)
    }

    // forget it once, through the pool's name
    const del = await adminRequest(admin, 'DELETE', `/persistence/shared?key=${encodeURIComponent(key)}`)
    t.equal(del.status, 200, 'DELETE /persistence/shared?key=... answers 200')
    t.equal((await adminRequest(admin, 'GET', `/persistence/shared?key=${encodeURIComponent(key)}`)).status, 404, 'the entry is gone')
    for (const fe of ['a', 'b']) {
      t.equal((await adminRequest(admin, 'GET', `/persistence/${fe}?key=${encodeURIComponent(key)}`)).status, 404, `the entry is gone as seen through ${fe}`)
    }
    t.equal(await through('b'), home, `forgotten: through b the client is placed afresh, on its ring home ${home}`)
    t.equal(await through('a'), home, `and through a it reaches ${home} too`)

    const status = (await adminRequest(admin, 'GET', '/status')).json() as {
      pools: { name: string; implicit: boolean; persistence: { size: number }; backends: { name: string }[] }[]
      frontends: { name: string; pools: string[] }[]
    }
    const listed = status.pools.filter(p => p.name === 'shared')
    t.equal(listed.length, 1, '/status lists pool shared once')
    t.match(listed[0], { implicit: false, persistence: { size: 1 } }, 'explicit, with the one entry')
    t.same(listed[0]?.backends.map(b => b.name), ['s1', 's2', 's3'], 'with its three backends')
    t.same(status.pools.map(p => p.name).sort(), ['pg', 'rest', 'shared'], '/status pools: the three pools, no implicit ones')
    const fes = new Map(status.frontends.map(f => [f.name, f.pools]))
    t.same(fes.get('a'), ['shared'], 'frontend a: pools ["shared"]')
    t.same(fes.get('b'), ['shared'], 'frontend b: pools ["shared"]')
    t.same(fes.get('tls'), ['pg', 'rest'], 'frontend tls: pools ["pg", "rest"]')
  })
})

t.test('(c) a pool behind two frontends is health-checked once', async t => {
  const h1 = await startNamedBackend(t, 'h1')
  const o1 = await startNamedBackend(t, 'o1')
  const check = { interval: '200ms', timeout: '100ms', rise: 1 }
  const file = writeConfig(t, {
    shutdown_grace: '1s',
    pools: [
      // h2 refuses: down at its first check
      { name: 'hc', health_check: { ...check, fall: 1 }, backends: [entry(h1), { name: 'h2', address: await refusingAddress() }] },
      // o2 refuses too, but goes down only after 8 checks: a clock made of check intervals
      { name: 'other', health_check: { ...check, fall: 8 }, backends: [entry(o1), { name: 'o2', address: await refusingAddress() }] },
    ],
    frontends: [
      { name: 'c1', listen: '127.0.0.1:0', pool: 'hc' },
      { name: 'c2', listen: '127.0.0.1:0', pool: 'hc' },
      { name: 'c3', listen: '127.0.0.1:0', pool: 'other' },
    ],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const c1 = await lb.listening('c1')
  const c2 = await lb.listening('c2')
  await lb.listening('c3')

  const down = await lb.waitForMsg('backend down', { backend: 'h2' }, { timeoutMs: 5_000 })
  const at = { h1: h1.connections, o1: o1.connections }
  t.equal(down.pool, 'hc', 'the backend down line names the pool')
  // seven or more check intervals later
  await lb.waitForMsg('backend down', { backend: 'o2' }, { timeoutMs: 10_000 })
  const checks = { h1: h1.connections - at.h1, o1: o1.connections - at.o1 }
  const lines = lb.lines.filter((l: LogLine) => l.msg === 'backend down' && l.backend === 'h2')
  t.equal(lines.length, 1, `exactly one "backend down" line for h2 (${JSON.stringify(lines)})`)
  t.ok(checks.o1 >= 4, `the one-frontend pool's live backend was checked ${checks.o1} times meanwhile`)
  t.ok(checks.h1 <= checks.o1 + 2, `the two-frontend pool's live backend was checked ${checks.h1} times: once per interval, not once per frontend`)

  // both frontends reach the pool, and its one live backend
  t.equal(await request(c1, '127.0.4.1'), 'h1', 'through c1: h1 (h2 is down)')
  t.equal(await request(c2, '127.0.4.2'), 'h1', 'through c2: h1 (h2 is down)')
  const again = lb.lines.filter((l: LogLine) => l.msg === 'backend down' && l.backend === 'h2').length
  t.equal(again, 1, 'still one "backend down" line for h2')
})
