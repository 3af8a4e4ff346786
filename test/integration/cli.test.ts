/**
 * The command line (SPEC §2, §8): `check` names every error with its path,
 * `explain --ring --json`, --version, exit codes 1 (bad arguments) and 2
 * (cannot bind), and quick-flag mode.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import t from 'tap'
import { REPO_ROOT, request, runCli, runL4lb, startNamedBackend, waitForEvent, writeConfig } from '../helpers'
import { closedLine } from '../util/integration'

const BROKEN = `# five different mistakes, each must be named with its path
shutdown_grace: 5 parsecs
frontends:
  - name: fe
    listen: 127.0.0.1:0
    affinty: { key: source_ip }
    allow: [10.0.0.0/33]
    backends:
      - { name: a, address: 127.0.0.1:9001 }
      - { name: b, address: "nohost:9002" }
      - { name: a, address: 127.0.0.1:9003 }
`

t.test('check: every error of a broken config, one per line as path: message; exit 1', async t => {
  const file = writeConfig(t, BROKEN)
  const r = await runCli(['check', '-c', file])
  t.equal(r.code, 1, 'exit code 1')
  t.notMatch(r.stdout, /config ok/, 'does not claim the config is ok')
  const lines = (r.stdout + r.stderr).trim().split('\n')
  const expected: [string, RegExp][] = [
    ['shutdown_grace', /5 parsecs/],
    ['frontends[0].affinty', /^unknown key$/],
    ['frontends[0].allow[0]', /10\.0\.0\.0\/33/],
    ['frontends[0].backends[1].address', /nohost:9002/],
    ['frontends[0].backends[2].name', /duplicate.*"a"/],
  ]
  for (const [p, message] of expected) {
    const line = lines.find(l => l.startsWith(`${p}: `))
    t.ok(line, `an error for ${p}`)
    if (line) t.match(line.slice(p.length + 2), message, `${p}: the message names the bad value (${line})`)
  }
  t.equal(lines.length, expected.length, `exactly ${expected.length} lines, one per error:\n${lines.join('\n')}`)
  for (const l of lines) t.match(l, /^[a-z_]+(\[\d+\]|\.[a-z_]+)*: \S/, `"${l}" is path: message`)
})

t.test('check: a JSON config by extension, bad duration deep in a frontend', async t => {
  const file = writeConfig(
    t,
    {
      frontends: [
        {
          name: 'fe',
          listen: '127.0.0.1:0',
          timeouts: { connect: '2 seconds' },
          backends: [{ name: 'a', address: '127.0.0.1:9001' }],
        },
      ],
    },
    { ext: 'json' },
  )
  const r = await runCli(['check', '-c', file])
  t.equal(r.code, 1, 'exit code 1')
  t.match(r.stderr + r.stdout, /^frontends\[0\]\.timeouts\.connect: .*2 seconds/m, 'names the path and the value')
})

t.test('check: a valid config exits 0 with "config ok"', async t => {
  const r = await runCli(['check', '-c', path.join(REPO_ROOT, 'config', 'l4lb.yaml')])
  t.equal(r.code, 0, 'exit code 0')
  t.equal(r.stdout.trim(), 'config ok', 'prints config ok')
  const mine = writeConfig(t, {
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0', '[::1]:0'], backends: [{ name: 'a', address: '127.0.0.1:1' }] }],
  })
  const r2 = await runCli(['check', '-c', mine])
  t.equal(r2.code, 0, 'a minimal config with defaults is ok too')
  t.equal(r2.stdout.trim(), 'config ok', 'prints config ok')
})

t.test('explain --ring --json: every backend, shares sum to 1, proportional to weight', async t => {
  const weights: Record<string, number> = { a: 1, b: 1, c: 2, d: 1, z: 0 }
  const file = writeConfig(t, {
    frontends: [
      {
        name: 'fe',
        listen: '127.0.0.1:0',
        backends: Object.entries(weights).map(([name, weight], i) => ({ name, address: `127.0.0.1:${9001 + i}`, weight })),
      },
    ],
  })
  const r = await runCli(['explain', '-c', file, '--ring', '--json'])
  t.equal(r.code, 0, 'exit code 0')
  const out = JSON.parse(r.stdout) as { frontend: string; backends: { name: string; share: number }[] }
  t.equal(out.frontend, 'fe', 'names the frontend')
  t.same(out.backends.map(b => b.name).sort(), Object.keys(weights).sort(), 'every backend appears')
  const sum = out.backends.reduce((s, b) => s + b.share, 0)
  t.ok(Math.abs(sum - 1) < 1e-9, `shares sum to 1 (${sum})`)
  const total = Object.values(weights).reduce((s, w) => s + w, 0)
  for (const b of out.backends) {
    const fair = weights[b.name]! / total
    if (fair === 0) t.equal(b.share, 0, `${b.name} (weight 0) has no share`)
    else t.ok(b.share <= fair * 1.1 && b.share >= fair * 0.9, `${b.name}: share ${b.share.toFixed(4)} within 10% of fair ${fair}`)
  }
})

t.test('--version prints the package version', async t => {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const flag of ['--version', '-V']) {
    const r = await runCli([flag])
    t.equal(r.code, 0, `${flag}: exit 0`)
    t.equal(r.stdout.trim(), pkg.version, `${flag} prints ${pkg.version}`)
  }
})

t.test('bad arguments exit 1 and name the flag or key', async t => {
  const cases: { args: string[]; names: RegExp }[] = [
    { args: ['run', '--bogus'], names: /--bogus/ },
    { args: ['check'], names: /--config/ },
    { args: ['run', '--listen', '127.0.0.1:0'], names: /--backend/ },
    { args: ['run', '--listen', '127.0.0.1:0', '--backend', 'nohost:1'], names: /--backend.*nohost:1|nohost:1.*--backend/ },
    { args: ['run', '--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1', '--ttl', 'forever'], names: /--ttl/ },
    { args: ['run', '-c', '/nonexistent/l4lb.yaml'], names: /\/nonexistent\/l4lb\.yaml/ },
    { args: ['explain', '-c', path.join(REPO_ROOT, 'config', 'l4lb.yaml')], names: /--client/ },
  ]
  for (const c of cases) {
    const r = await runCli(c.args, { timeoutMs: 10_000 })
    t.equal(r.code, 1, `l4lb ${c.args.join(' ')}: exit 1`)
    t.match(r.stderr + r.stdout, c.names, `l4lb ${c.args.join(' ')}: the message names ${c.names.source}`)
  }
})

t.test('an address already in use: exit 2', async t => {
  const squatter = net.createServer()
  squatter.listen(0, '127.0.0.1')
  await waitForEvent(squatter, 'listening')
  t.teardown(() => squatter.close())
  const port = (squatter.address() as net.AddressInfo).port
  const file = writeConfig(t, {
    frontends: [{ name: 'fe', listen: [`127.0.0.1:${port}`], backends: [{ name: 'a', address: '127.0.0.1:1' }] }],
  })
  const r = await runCli(['run', '-c', file], { timeoutMs: 10_000 })
  t.equal(r.code, 2, 'exit code 2')
  t.match(r.stdout + r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`), 'the message names the address')
})

t.test('quick-flag mode: run --listen --backend serves traffic', async t => {
  const one = await startNamedBackend(t, 'one')
  const two = await startNamedBackend(t, 'two')
  const lb = runL4lb(t, ['run', '--listen', '127.0.0.1:0', '--backend', one.address, '--backend', two.address])
  const port = await lb.listening('default')
  const clients = Array.from({ length: 12 }, (_, i) => `127.0.18.${i + 1}`)
  const byFlag: Record<string, string> = { b1: 'one', b2: 'two' }
  const seen = new Set<string>()
  for (const c of clients) {
    const since = lb.mark()
    const name = await request(port, c)
    seen.add(name)
    const line = await closedLine(lb, c, since)
    t.equal(byFlag[String(line.backend)], name, `${c}: logged backend ${String(line.backend)} is the --backend that answered (${name})`)
    t.equal(await request(port, c), name, `${c}: persistent in quick mode`)
  }
  t.same([...seen].sort(), ['one', 'two'], 'both --backend addresses serve')
  const exit = await lb.stop()
  t.same(exit, { code: 0, signal: null }, 'SIGTERM: exit 0')
})
