/**
 * The admin HTTP API (SPEC §4, §5 runtime state, §6 DELETE ?backend=): every
 * route, its errors (401 without the token, 404 for unknown names, 400 for a
 * bad action), drain and disable as seen by real clients, their survival of
 * a reload and of health transitions, loopback by default, and the
 * `l4lb status` / `l4lb drain` commands.
 */
import t from 'tap'
import { validate } from '../../src/config/validate'
import {
  adminRequest,
  connectFrom,
  readLine,
  request,
  runCli,
  startNamedBackend,
  type Backend,
  type HttpResult,
} from '../helpers'
import {
  TOKEN,
  adminConfig,
  adminJson,
  backendStatus,
  entries,
  getStatus,
  ips,
  setMode,
  startLb,
  table,
  type Entry,
} from './util'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

function three(t: tap.Test): Promise<Backend[]> {
  return Promise.all(['a', 'b', 'c'].map(n => startNamedBackend(t, n)))
}

/** Asserts a 4xx/5xx answer with a JSON `{error: string}` body. */
function isError(t: tap.Test, r: HttpResult, status: number, what: string): void {
  t.equal(r.status, status, `${what}: ${status}`)
  t.match(String(r.headers['content-type']), /application\/json/, `${what}: JSON content type`)
  const body = r.json() as { error?: unknown }
  t.type(body.error, 'string', `${what}: {error} body (${JSON.stringify(body)})`)
}

/** Each client's backend for one connection, in order. */
async function place(port: number, clients: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const c of clients) out.set(c, await request(port, c))
  return out
}

t.test('GET /healthz, /status shape with real ports and counters, unknown route', async t => {
  const backends = await three(t)
  const { lb, port, admin } = await startLb(t, adminConfig(entries(backends)))

  const h = await adminRequest(admin, 'GET', '/healthz')
  t.equal(h.status, 200, '/healthz: 200')
  t.equal(h.text.trim(), 'ok', '/healthz: ok')

  const s = await getStatus(admin)
  t.equal(s.frontends.length, 1, 'one frontend')
  const fe = s.frontends[0]!
  t.equal(fe.name, 'fe')
  t.same(fe.listen, [`127.0.0.1:${port}`], 'listen shows the bound port, not :0')
  t.equal(fe.persistence.size, 0, 'persistence.size is 0 before traffic')
  t.same(
    fe.backends.map(b => ({ name: b.name, address: b.address, state: b.state, active: b.active, total: b.total })),
    backends.map(b => ({ name: b.name, address: b.address, state: 'up', active: 0, total: 0 })),
    'backends: name, address, state, active, total',
  )

  // One connection held open: active and total of its backend.
  const held = await connectFrom(port, '127.0.0.10')
  const name = await readLine(held)
  const during = await backendStatus(admin, 'fe', name)
  t.equal(during.active, 1, `${name}: active 1 while the connection is open`)
  t.equal(during.total, 1, `${name}: total 1`)
  const mark = lb.mark()
  held.end()
  held.resume()
  await lb.waitForMsg('connection closed', { client: '127.0.0.10' }, { since: mark })
  const after = await backendStatus(admin, 'fe', name)
  t.same({ active: after.active, total: after.total }, { active: 0, total: 1 }, `${name}: active 0, total 1 after the close`)
  t.equal((await getStatus(admin)).frontends[0]!.persistence.size, 1, 'persistence.size counts the new entry')

  isError(t, await adminRequest(admin, 'GET', '/no/such/route'), 404, 'unknown route')
  isError(t, await adminRequest(admin, 'GET', '/backends/fe/a/drain'), 405, 'GET on a POST route')
})

t.test('GET and DELETE /persistence/:frontend', async t => {
  const backends = await three(t)
  const { port, admin } = await startLb(t, adminConfig(entries(backends)))
  const clients = ips(8, 10, 12)
  const placed = await place(port, clients)

  const list = await adminJson<{ entries: Entry[] }>(admin, 'GET', '/persistence/fe')
  t.equal(list.entries.length, clients.length, 'one entry per client')
  const now = Date.now()
  for (const c of clients) {
    const e = list.entries.find(x => x.key === `ip:${c}`)
    t.ok(e, `an entry for ip:${c}`)
    if (!e) continue
    t.equal(e.backend, placed.get(c), `ip:${c} → ${placed.get(c)}, the backend the client reached`)
    t.match(e.expires_at, ISO, `ip:${c}: expires_at is an ISO time`)
    t.ok(Date.parse(String(e.expires_at)) > now, `ip:${c}: expires_at is in the future`)
  }
  t.equal((await getStatus(admin)).frontends[0]!.persistence.size, clients.length, '/status persistence.size agrees')

  const k = `ip:${clients[0]}`
  const one = await adminJson<{ entries: Entry[] }>(admin, 'GET', `/persistence/fe?key=${k}`)
  t.same(one, { entries: [list.entries.find(x => x.key === k)] }, '?key=K answers {entries:[entry]}')
  isError(t, await adminRequest(admin, 'GET', '/persistence/fe?key=ip:127.0.9.9'), 404, 'an absent key')
  isError(t, await adminRequest(admin, 'GET', '/persistence/nope'), 404, 'GET for an unknown frontend')
  isError(t, await adminRequest(admin, 'DELETE', '/persistence/nope', { token: TOKEN }), 404, 'DELETE for an unknown frontend')

  // Forget one key: gone, and the client's next connection places it again.
  const del = await adminRequest(admin, 'DELETE', `/persistence/fe?key=${k}`, { token: TOKEN })
  t.equal(del.status, 200, 'DELETE ?key=K: 200')
  t.same(del.json(), { deleted: 1 }, 'DELETE ?key=K: one deleted')
  isError(t, await adminRequest(admin, 'GET', `/persistence/fe?key=${k}`), 404, 'the forgotten key')
  t.notOk((await table(admin)).has(k), 'the list no longer has it')
  t.equal((await table(admin)).size, clients.length - 1, 'and only it is gone')
  isError(t, await adminRequest(admin, 'DELETE', `/persistence/fe?key=${k}`, { token: TOKEN }), 404, 'DELETE of an absent key')
  const again = await request(port, clients[0])
  t.equal((await table(admin)).get(k), again, `the next connection placed ${k} again, on ${again}`)

  // Forget one backend's entries: exactly those.
  const before = await table(admin)
  const victim = before.get(k)!
  const expected = new Map([...before].filter(([, b]) => b !== victim))
  const delB = await adminRequest(admin, 'DELETE', `/persistence/fe?backend=${victim}`, { token: TOKEN })
  t.equal(delB.status, 200, 'DELETE ?backend=NAME: 200')
  t.same(delB.json(), { deleted: before.size - expected.size }, `DELETE ?backend=${victim}: counts the deleted entries`)
  t.same(await table(admin), expected, `exactly the entries of ${victim} are gone`)
  isError(t, await adminRequest(admin, 'DELETE', '/persistence/fe?backend=nope', { token: TOKEN }), 404, 'DELETE ?backend= an unknown backend')
  t.same(await table(admin), expected, 'which changed nothing')

  // Forget everything.
  const all = await adminRequest(admin, 'DELETE', '/persistence/fe', { token: TOKEN })
  t.equal(all.status, 200, 'DELETE all: 200')
  t.same(all.json(), { deleted: expected.size }, 'DELETE all: counts them')
  t.same(await adminJson(admin, 'GET', '/persistence/fe'), { entries: [] }, 'the table is empty')
  t.equal((await getStatus(admin)).frontends[0]!.persistence.size, 0, 'persistence.size is 0')
})

t.test('drain: its clients stay, new keys never land on it, a reload keeps it; enable restores', async t => {
  const backends = await three(t)
  const { lb, port, admin } = await startLb(t, adminConfig(entries(backends)))
  const clients = ips(4, 10, 12)
  const home = await place(port, clients)
  const target = home.get(clients[0]!)!
  const its = clients.filter(c => home.get(c) === target)

  const r = await setMode(admin, 'fe', target, 'drain')
  t.equal(r.status, 200, 'POST drain: 200')
  t.match(r.json(), { name: target, state: 'draining' }, 'the answer shows the backend draining')
  t.equal((await backendStatus(admin, 'fe', target)).state, 'draining', '/status shows it draining')

  for (const c of its) t.equal(await request(port, c), target, `${c}, already on ${target}, keeps it`)
  const fresh = ips(5, 10, 30)
  const placed = await place(port, fresh)
  t.same([...placed].filter(([, b]) => b === target), [], `none of ${fresh.length} new clients landed on ${target}`)

  // A reload of the same file keeps the runtime state.
  const mark = lb.mark()
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since: mark })
  t.equal((await backendStatus(admin, 'fe', target)).state, 'draining', 'still draining after the reload')
  for (const c of its) t.equal(await request(port, c), target, `${c} still keeps ${target} after the reload`)
  const fresh2 = await place(port, ips(6, 10, 10))
  t.same([...fresh2].filter(([, b]) => b === target), [], `no new client landed on ${target} after the reload`)

  // Enable: back to normal. The same new clients, forgotten, now reach it too.
  const en = await setMode(admin, 'fe', target, 'enable')
  t.equal(en.status, 200, 'POST enable: 200')
  t.equal((await backendStatus(admin, 'fe', target)).state, 'up', '/status shows it up')
  t.equal((await adminRequest(admin, 'DELETE', '/persistence/fe', { token: TOKEN })).status, 200, 'forgot every key')
  const replaced = await place(port, fresh)
  const onTarget = [...replaced].filter(([, b]) => b === target)
  t.ok(onTarget.length > 0, `after enable, ${onTarget.length} of the same ${fresh.length} clients land on ${target}`)
})

t.test('disable: its clients move at their next connection; enable restores', async t => {
  const backends = await three(t)
  const { port, admin } = await startLb(t, adminConfig(entries(backends)))
  const clients = ips(7, 10, 12)
  const home = await place(port, clients)
  const target = home.get(clients[0]!)!
  const its = clients.filter(c => home.get(c) === target)
  const others = clients.filter(c => home.get(c) !== target)

  const r = await setMode(admin, 'fe', target, 'disable')
  t.equal(r.status, 200, 'POST disable: 200')
  t.equal((await backendStatus(admin, 'fe', target)).state, 'disabled', '/status shows it disabled')
  const moved = new Map<string, string>()
  for (const c of its) {
    const b = await request(port, c)
    t.not(b, target, `${c} moved off ${target} (to ${b})`)
    moved.set(c, b)
  }
  for (const c of others) t.equal(await request(port, c), home.get(c), `${c} stays on ${home.get(c)}`)
  const tbl = await table(admin)
  for (const c of its) t.equal(tbl.get(`ip:${c}`), moved.get(c), `ip:${c} is rewritten to ${moved.get(c)}`)
  const fresh = await place(port, ips(9, 10, 30))
  t.same([...fresh].filter(([, b]) => b === target), [], `no new client landed on ${target}`)

  const en = await setMode(admin, 'fe', target, 'enable')
  t.equal(en.status, 200, 'POST enable: 200')
  t.equal((await backendStatus(admin, 'fe', target)).state, 'up', '/status shows it up')
  for (const c of its) t.equal(await request(port, c), moved.get(c), `${c} stays where it moved (${moved.get(c)})`)
  // A forgotten key is placed by the ring again: home is eligible once more.
  const k = `ip:${its[0]}`
  t.equal((await adminRequest(admin, 'DELETE', `/persistence/fe?key=${k}`, { token: TOKEN })).status, 200, `forgot ${k}`)
  t.equal(await request(port, its[0]), target, `${its[0]} is placed on ${target} again`)
  t.equal((await table(admin)).get(k), target, `and the table says so`)
})

t.test('health transitions do not clear a drain', async t => {
  const backends = await three(t)
  const hc = { interval: '200ms', timeout: '100ms', rise: 2, fall: 2 }
  const { lb, port, admin } = await startLb(t, adminConfig(entries(backends), { health_check: hc }))
  const target = backends[1]!
  t.equal((await setMode(admin, 'fe', target.name, 'drain')).status, 200, `drained ${target.name}`)

  const mark = lb.mark()
  await target.close()
  await lb.waitForMsg('backend down', { backend: target.name }, { since: mark })
  const down = await backendStatus(admin, 'fe', target.name)
  t.same({ state: down.state, health: down.health }, { state: 'draining', health: 'down' }, 'down: still draining (health down)')

  const mark2 = lb.mark()
  await startNamedBackend(t, target.name, { port: target.port })
  await lb.waitForMsg('backend up', { backend: target.name }, { since: mark2 })
  const up = await backendStatus(admin, 'fe', target.name)
  t.same({ state: up.state, health: up.health }, { state: 'draining', health: 'up' }, 'up again: still draining')
  const fresh = await place(port, ips(10, 10, 30))
  t.same([...fresh].filter(([, b]) => b === target.name), [], `no new client landed on ${target.name}`)
})

t.test('token: mutating calls need it, reads do not; bad action 400; unknown names 404', async t => {
  const backends = await three(t)
  const { port, admin } = await startLb(t, adminConfig(entries(backends)))
  await request(port, '127.0.0.10')

  for (const [what, token] of [['without a token', null], ['with a wrong token', 'wrong']] as const) {
    isError(t, await setMode(admin, 'fe', 'a', 'drain', token), 401, `POST drain ${what}`)
    isError(t, await setMode(admin, 'fe', 'a', 'disable', token), 401, `POST disable ${what}`)
    isError(t, await setMode(admin, 'fe', 'a', 'enable', token), 401, `POST enable ${what}`)
    const opts = token === null ? {} : { token }
    isError(t, await adminRequest(admin, 'DELETE', '/persistence/fe', opts), 401, `DELETE all ${what}`)
    isError(t, await adminRequest(admin, 'DELETE', '/persistence/fe?key=ip:127.0.0.10', opts), 401, `DELETE ?key ${what}`)
    isError(t, await adminRequest(admin, 'DELETE', '/persistence/fe?backend=a', opts), 401, `DELETE ?backend ${what}`)
  }
  t.equal((await backendStatus(admin, 'fe', 'a')).state, 'up', 'refused calls changed no state')
  t.equal((await table(admin)).size, 1, 'refused calls forgot no key')

  for (const path of ['/healthz', '/status', '/metrics', '/persistence/fe', '/persistence/fe?key=ip:127.0.0.10', '/']) {
    t.equal((await adminRequest(admin, 'GET', path)).status, 200, `GET ${path} without a token: 200`)
  }
  for (const action of ['drain', 'disable', 'enable']) {
    const r = await setMode(admin, 'fe', 'a', action)
    t.equal(r.status, 200, `POST ${action} with the token: 200`)
    t.match(r.json(), { name: 'a' }, `POST ${action}: a JSON body`)
  }
  t.equal((await adminRequest(admin, 'DELETE', '/persistence/fe', { token: TOKEN })).status, 200, 'DELETE with the token: 200')

  isError(t, await setMode(admin, 'fe', 'a', 'explode'), 400, 'a bad action')
  isError(t, await setMode(admin, 'fe', 'nope', 'drain'), 404, 'an unknown backend')
  isError(t, await setMode(admin, 'nope', 'a', 'drain'), 404, 'an unknown frontend')
})

t.test('the admin listener is on loopback unless configured otherwise', async t => {
  const r = validate({ admin: {}, frontends: [{ name: 'fe', listen: '127.0.0.1:0', backends: [{ name: 'a', address: '127.0.0.1:1' }] }] })
  t.ok(r.ok, 'a config with an empty admin block is valid')
  if (r.ok) t.equal(r.config.admin?.listen.host, '127.0.0.1', 'its admin listener defaults to 127.0.0.1')

  const backends = await three(t)
  const { lb, admin } = await startLb(t, { frontends: [{ name: 'fe', listen: '127.0.0.1:0', backends: entries(backends) }], admin: { listen: '127.0.0.1:0' } })
  const line = await lb.waitForMsg('admin listening')
  t.equal(line.address, '127.0.0.1', '"admin listening" reports 127.0.0.1')
  t.equal((await adminRequest(admin, 'GET', '/healthz')).status, 200, 'reachable on 127.0.0.1')
  await t.rejects(
    adminRequest(admin, 'GET', '/healthz', { host: '127.0.0.2' }),
    { code: 'ECONNREFUSED' },
    'not on another address of the host (no wildcard bind)',
  )
  // No token configured: mutating calls are open.
  t.equal((await setMode(admin, 'fe', 'a', 'drain', null)).status, 200, 'without a configured token, POST drain needs none')
})

t.test('l4lb status and l4lb drain talk to the admin API', async t => {
  const backends = await three(t)
  const { admin } = await startLb(t, adminConfig(entries(backends)))
  const at = `127.0.0.1:${admin}`

  const st = await runCli(['status', '--admin', at])
  t.equal(st.code, 0, `l4lb status exits 0 (stderr: ${st.stderr})`)
  t.match(st.stdout, /^fe\b/m, 'names the frontend')
  for (const b of backends) {
    t.match(st.stdout, new RegExp(`^\\s+${b.name}\\s+${b.address.replace(/\./g, '\\.')}\\s+up\\b`, 'm'), `a row for ${b.name}: address, state`)
  }

  const dr = await runCli(['drain', 'fe/b', '--admin', at, '--token', TOKEN])
  t.equal(dr.code, 0, `l4lb drain fe/b exits 0 (stderr: ${dr.stderr})`)
  t.match(dr.stdout, /draining/, 'and says so')
  t.equal((await backendStatus(admin, 'fe', 'b')).state, 'draining', 'b is draining')
  const st2 = await runCli(['status', '--admin', at])
  t.match(st2.stdout, /^\s+b\s+\S+\s+draining\b/m, 'l4lb status shows it')

  const bad = await runCli(['drain', 'fe/nope', '--admin', at, '--token', TOKEN])
  t.equal(bad.code, 1, 'l4lb drain fe/nope exits 1')
  t.match(bad.stderr, /nope/, 'naming the unknown backend')
  const noToken = await runCli(['disable', 'fe/a', '--admin', at], { env: { L4LB_ADMIN_TOKEN: '' } })
  t.equal(noToken.code, 1, 'without the token: exit 1')
  t.match(noToken.stderr, /401/, 'reporting the 401')
  t.equal((await backendStatus(admin, 'fe', 'a')).state, 'up', 'and a is untouched')
  const en = await runCli(['enable', 'fe/b', '--admin', at, '--token', TOKEN])
  t.equal(en.code, 0, 'l4lb enable fe/b exits 0')
  t.equal((await backendStatus(admin, 'fe', 'b')).state, 'up', 'b is up again')
})
