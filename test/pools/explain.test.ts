/**
 * `l4lb explain` with routes (SPEC §9): the route and pool it reports for
 * --sni, --alpn, --port, --protocol and the client address, the text form,
 * a client no route takes, and `--ring --pool`.
 */
import t from 'tap'
import { runCli, writeConfig } from '../helpers'

const config = {
  pools: [
    { name: 'pg', affinity: { key: 'sni' }, backends: [{ name: 'pg1', address: '127.0.0.1:5001' }, { name: 'pg2', address: '127.0.0.1:5002' }] },
    { name: 'ssh', backends: [{ name: 's1', address: '127.0.0.1:2201' }] },
    { name: 'web', backends: [{ name: 'w1', address: '127.0.0.1:8001' }, { name: 'w2', address: '127.0.0.1:8002', weight: 3 }] },
  ],
  frontends: [
    {
      name: 'edge',
      listen: ['127.0.0.1:443'],
      routes: [
        { name: 'db', match: { sni: '*.pg.example.com' }, pool: 'pg' },
        { name: 'h2', match: { alpn: 'h2' }, pool: 'web' },
        { name: 'shell', match: { protocol: 'ssh' }, pool: 'ssh' },
        { name: 'alt', match: { destination_port: 8443 }, pool: 'web' },
        { name: 'plain', match: { protocol: 'other', source: '10.0.0.0/8' }, pool: 'web' },
      ],
    },
    { name: 'direct', listen: ['127.0.0.1:5432'], pool: 'pg' },
  ],
}

async function explain(t: { equal: (a: unknown, b: unknown, m?: string) => void }, file: string, args: string[]): Promise<Record<string, unknown>> {
  const r = await runCli(['explain', '-c', file, '--json', ...args])
  t.equal(r.code, 0, `explain ${args.join(' ')} exits 0 (stderr: ${r.stderr.trim()})`)
  return JSON.parse(r.stdout) as Record<string, unknown>
}

t.test('explain reports the route and the pool', async t => {
  const file = writeConfig(t, config)
  const cases: [string[], string | null, string | null, string | null][] = [
    [['--client', '192.0.2.1', '--sni', 'A.Pg.Example.com'], 'db', 'pg', 'sni:a.pg.example.com'],
    [['--client', '192.0.2.1', '--alpn', 'http/1.1', '--alpn', 'h2'], 'h2', 'web', 'ip:192.0.2.1'],
    [['--client', '192.0.2.1', '--protocol', 'ssh'], 'shell', 'ssh', 'ip:192.0.2.1'],
    [['--client', '192.0.2.1', '--protocol', 'ssh', '--sni', 'x.pg.example.com'], 'db', 'pg', 'sni:x.pg.example.com'],
    [['--client', '192.0.2.1', '--port', '8443'], 'alt', 'web', 'ip:192.0.2.1'],
    [['--client', '10.1.2.3'], 'plain', 'web', 'ip:10.1.2.3'],
    [['--client', '192.0.2.1'], null, null, null],
    [['--client', '192.0.2.1', '--frontend', 'direct', '--sni', 'b.example.com'], null, 'pg', 'sni:b.example.com'],
  ]
  for (const [args, route, pool, key] of cases) {
    const e = await explain(t, file, args)
    t.same([e.route, e.pool, e.key], [route, pool, key], `${args.join(' ')} → route ${route}, pool ${pool}, key ${key}`)
    if (pool === null) t.same([e.backend, e.via], [null, 'no_route'], 'no route: no backend')
    else t.ok(typeof e.backend === 'string', `a backend of ${pool}: ${String(e.backend)}`)
  }
  const text = await runCli(['explain', '-c', file, '--client', '192.0.2.1'])
  t.match(text.stdout, /^route +\(none matches\)$/m, 'the text form says no route matches')
  t.match(text.stdout, /no_route/, 'and that the connection is refused')
  const bad = await runCli(['explain', '-c', file, '--client', '192.0.2.1', '--protocol', 'smtp'])
  t.equal(bad.code, 1, 'an unknown --protocol exits 1')
  t.match(bad.stderr, /--protocol/, 'naming the flag')
})

t.test('explain --ring --pool', async t => {
  const file = writeConfig(t, config)
  const r = await explain(t, file, ['--ring', '--pool', 'web'])
  t.equal(r.pool, 'web')
  const shares = (r.backends as { name: string; share: number }[]).map(b => [b.name, Math.round(b.share * 100)])
  t.same(shares, [['w1', 25], ['w2', 75]], 'weights 1:3 give shares of about 25% and 75%')
  const viaFe = await explain(t, file, ['--ring', '--frontend', 'direct'])
  t.equal(viaFe.pool, 'pg', 'a frontend with one pool explains that pool')
  const routed = await runCli(['explain', '-c', file, '--ring', '--frontend', 'edge'])
  t.equal(routed.code, 1, 'a frontend with several pools needs --pool')
  t.match(routed.stderr, /--pool: frontend "edge" routes to several pools \(pg, web, ssh\); name one/)
  const unknown = await runCli(['explain', '-c', file, '--ring', '--pool', 'nope'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /--pool: no pool named "nope" \(have: pg, ssh, web\)/)
})
