// `l4lb forget FRONTEND --key K | --backend NAME | --all` against a running l4lb.
import t from 'tap'
import { request, runCli, startNamedBackend } from '../helpers.js'
import { TOKEN, adminConfig, entries, ips, startLb, table } from './util.js'

t.test('forget: one key, one backend, all; errors exit 1', async t => {
  const backends = await Promise.all(['alpha', 'bravo', 'charlie'].map(n => startNamedBackend(t, n)))
  const { port, admin } = await startLb(t, adminConfig(entries(backends)))
  const clients = ips(41, 1, 24)
  for (const c of clients) await request(port, c)
  const before = await table(admin)
  t.equal(before.size, clients.length, 'every client has an entry')

  const cli = (...args: string[]) => runCli(['forget', 'fe', '--admin', `127.0.0.1:${admin}`, '--token', TOKEN, ...args])

  const key = `ip:${clients[0]}`
  let r = await cli('--key', key)
  t.equal(r.code, 0, `--key exits 0 (${r.stderr})`)
  t.match(r.stdout, /forgot 1 entries/)
  let now = await table(admin)
  t.notOk(now.has(key), 'that key is gone')
  t.equal(now.size, clients.length - 1, 'the others stay')

  const victim = before.get(`ip:${clients[1]}`)!
  const onVictim = [...now.values()].filter(b => b === victim).length
  r = await cli('--backend', victim)
  t.equal(r.code, 0, '--backend exits 0')
  t.match(r.stdout, new RegExp(`forgot ${onVictim} entries`))
  now = await table(admin)
  t.notOk([...now.values()].includes(victim), `no entry is left on ${victim}`)
  t.equal(now.size, clients.length - 1 - onVictim, "only that backend's entries went")

  r = await cli('--all')
  t.equal(r.code, 0, '--all exits 0')
  t.equal((await table(admin)).size, 0, 'the table is empty')

  r = await cli('--backend', 'nope')
  t.equal(r.code, 1, 'an unknown backend exits 1')
  t.match(r.stderr, /no backend "nope"/)
  r = await runCli(['forget', 'fe', '--admin', `127.0.0.1:${admin}`, '--all'])
  t.equal(r.code, 1, 'without the token: exit 1')
  t.match(r.stderr, /401/)
  r = await cli('--key', key, '--all')
  t.equal(r.code, 1, 'two selectors at once: exit 1')
})
