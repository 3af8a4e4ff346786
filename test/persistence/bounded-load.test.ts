/**
 * Consistent hashing with bounded loads (SPEC §6 `balance.bounded_load`):
 * counting open connections, after placing a new key no eligible backend
 * holds more than ⌈factor × open / eligible⌉; new keys walk past full
 * backends; existing entries are not moved by it.
 */
import type * as net from 'node:net'
import t from 'tap'
import { adminRequest, connectFrom, readLine, request, runL4lb, startNamedBackend, writeConfig } from '../helpers'
import { entries } from '../util/integration'

interface StatusBackend {
  name: string
  active: number
}
interface Status {
  frontends: { name: string; backends: StatusBackend[] }[]
}

async function activeOf(admin: number, fe: string): Promise<Map<string, number>> {
  const s = (await adminRequest(admin, 'GET', '/status')).json() as Status
  const f = s.frontends.find(x => x.name === fe)
  if (!f) throw new Error(`no frontend ${fe} in /status`)
  return new Map(f.backends.map(b => [b.name, b.active]))
}

t.test('bounded_load 1.25: a hot set of keys never pushes a backend past the cap', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const be = entries(backends)
  const file = writeConfig(t, {
    shutdown_grace: '1s',
    admin: { listen: '127.0.0.1:0' },
    frontends: [
      { name: 'fe', listen: ['127.0.0.1:0'], balance: { bounded_load: 1.25 }, backends: be },
      // Same ring, no bound, own table: shows each client's ring home.
      { name: 'probe', listen: ['127.0.0.1:0'], backends: be },
    ],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening('fe')
  const probe = await lb.listening('probe')
  const admin = await lb.adminPort()

  // The hot set: 45 clients whose ring home is b1, and 15 others.
  const hot: string[] = []
  const rest: string[] = []
  for (let i = 1; i < 255 && (hot.length < 45 || rest.length < 15); i++) {
    const c = `127.0.9.${i}`
    const home = await request(probe, c)
    if (home === 'b1' && hot.length < 45) hot.push(c)
    else if (home !== 'b1' && rest.length < 15) rest.push(c)
  }
  t.equal(hot.length, 45, '45 clients homed on b1')
  // Interleave: 3 hot, 1 other, so the hot range keeps pressing on b1.
  const order: string[] = []
  for (let i = 0; i < 15; i++) order.push(hot[3 * i]!, hot[3 * i + 1]!, hot[3 * i + 2]!, rest[i]!)

  const held: net.Socket[] = []
  t.teardown(() => held.forEach(s => s.destroy()))
  const placed = new Map<string, string>()
  const violations: string[] = []
  let offHome = 0
  for (const c of order) {
    const s = await connectFrom(port, c)
    held.push(s)
    const name = await readLine(s)
    placed.set(c, name)
    if (hot.includes(c) && name !== 'b1') offHome++
    const active = await activeOf(admin, 'fe')
    const open = [...active.values()].reduce((a, b) => a + b, 0)
    const cap = Math.ceil((1.25 * open) / 3)
    if (open !== held.length) violations.push(`after ${c}: /status counts ${open} open, the test holds ${held.length}`)
    for (const [b, n] of active) if (n > cap) violations.push(`after ${c} (${held.length} open): ${b} has ${n} > cap ${cap}`)
  }
  t.same(violations, [], `at each of ${order.length} placements no backend exceeded ceil(1.25 x open / 3)`)
  const final = await activeOf(admin, 'fe')
  t.equal(final.get('b1'), 25, `the hot backend b1 is filled to the cap, ceil(1.25 x 60 / 3) = 25 (${JSON.stringify(Object.fromEntries(final))})`)
  t.equal(offHome, 45 - 25, `the other ${offHome} b1-homed clients were walked on past a full b1`)

  // Existing entries are not moved by the bound: a second connection of each
  // client on b1 (already at its cap) still goes to b1.
  const onB1 = order.filter(c => placed.get(c) === 'b1').slice(0, 5)
  for (const c of onB1) {
    const s = await connectFrom(port, c)
    held.push(s)
    t.equal(await readLine(s), 'b1', `${c}: a second connection stays on b1 though b1 is over the cap`)
  }
  const over = await activeOf(admin, 'fe')
  t.equal(over.get('b1'), 30, 'b1 now holds 30 open connections: entries win over the bound')

  // And after everything closed, each client still returns to where it was placed.
  for (const s of held.splice(0)) s.destroy()
  await lb.waitFor(() => lb.lines.filter(l => l.msg === 'connection closed' && l.frontend === 'fe').length >= 65, {
    what: '65 "connection closed" lines of fe',
  })
  const moved: string[] = []
  for (const c of order) {
    const again = await request(port, c)
    if (again !== placed.get(c)) moved.push(`${c}: ${placed.get(c)} -> ${again}`)
  }
  t.same(moved, [], 'all 60 clients reconnect to the backend they were placed on')
})
