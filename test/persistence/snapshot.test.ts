/**
 * Persistence snapshots (SPEC §6): the table survives a graceful stop and a
 * `kill -9` (at most one snapshot_interval lost), including clients that a
 * failover moved away from their ring home; an empty, truncated, foreign or
 * edited file is logged at warn level (naming the path) and ignored; entries
 * of backends that no longer exist are not loaded.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import t, { type Test } from 'tap'
import {
  adminRequest,
  request,
  runL4lb,
  startNamedBackend,
  tmpDir,
  withTimeout,
  writeConfig,
  type Backend,
  type L4lbProcess,
  type TestLike,
} from '../helpers'
import { entries, mapLimit, oneFrontend } from '../util/integration'

const CLIENTS = Array.from({ length: 100 }, (_, i) => `127.0.1.${i + 1}`)

interface Placed {
  /** Where each client went with every backend up and an empty table: its ring home. */
  home: Map<string, string>
  /** Where each client is now (its table entry). */
  now: Map<string, string>
  /** Clients whose entry is away from their ring home. */
  moved: string[]
}

interface Running {
  lb: L4lbProcess
  port: number
  admin: number
}

function config(backends: readonly Backend[], snapshot: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return oneFrontend(
    entries(backends),
    { persistence: { snapshot, ...extra } },
    { admin: { listen: '127.0.0.1:0' } },
  )
}

async function start(t: TestLike, file: string): Promise<Running> {
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening()
  const admin = await lb.adminPort()
  return { lb, port, admin }
}

async function tableOf(admin: number): Promise<Map<string, string>> {
  const r = await adminRequest(admin, 'GET', '/persistence/fe')
  if (r.status !== 200) throw new Error(`GET /persistence/fe: ${r.status} ${r.text}`)
  const body = r.json() as { entries: { key: string; backend: string }[] }
  return new Map(body.entries.map(e => [e.key, e.backend]))
}

/**
 * Places the 100 clients with every backend up, then stops `x` (refusing),
 * reconnects every client homed on it (each fails over to the next backend
 * on the ring), and brings `x` back on its old port. Returns the placement.
 */
async function placeWithFailover(
  t: TestLike,
  run: Running,
  backends: Backend[],
  x: number,
): Promise<Placed> {
  const first = await mapLimit(CLIENTS, 10, c => request(run.port, c))
  const home = new Map(CLIENTS.map((c, i) => [c, first[i]!]))
  const now = new Map(home)
  const xb = backends[x]!
  const homedOnX = CLIENTS.filter(c => home.get(c) === xb.name)
  await xb.close()
  for (const c of homedOnX) now.set(c, await request(run.port, c))
  backends[x] = await startNamedBackend(t, xb.name, { port: xb.port })
  const moved = CLIENTS.filter(c => now.get(c) !== home.get(c))
  return { home, now, moved }
}

/** The snapshot file's entries as key → backend; null while it is missing or unreadable. */
function snapshotEntries(file: string): Map<string, string> | null {
  try {
    const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { entries: [string, string, number][] }
    return new Map(doc.entries.map(([k, b]) => [k, b]))
  } catch {
    return null
  }
}

/** Bounded polling: the snapshot is written on a timer, no event announces it. */
async function pollUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function checkRestored(t: Test, run: Running, placed: Placed, label: string): Promise<void> {
  const loaded = await run.lb.waitForMsg('snapshot loaded')
  t.equal(loaded.loaded, 100, `${label}: the snapshot loaded 100 entries`)
  const got = await mapLimit(CLIENTS, 10, c => request(run.port, c))
  const wrong = CLIENTS.filter((c, i) => got[i] !== placed.now.get(c)).map((c, i) => `${c}: ${got[i]} != ${placed.now.get(c)}`)
  t.same(wrong, [], `${label}: all 100 clients land on their previous backends`)
  const movedOk = placed.moved.filter(c => got[CLIENTS.indexOf(c)] === placed.now.get(c))
  t.equal(movedOk.length, placed.moved.length, `${label}: the ${placed.moved.length} failed-over clients stay away from their (live) ring home`)
}

t.test('SIGTERM writes the snapshot; a restart puts all 100 clients back, failed-over ones too', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const dir = tmpDir(t)
  const snap = path.join(dir, 'table.json')
  const file = writeConfig(t, config(backends, snap, { snapshot_interval: '1h' }))
  const run1 = await start(t, file)
  await run1.lb.waitForMsg('no snapshot yet: starting with an empty table', { path: snap })
  const placed = await placeWithFailover(t, run1, backends, 0)
  t.ok(placed.moved.length >= 10, `${placed.moved.length} clients were failed over away from their ring home b1`)
  t.ok(placed.moved.every(c => placed.home.get(c) === 'b1' && placed.now.get(c) !== 'b1'), 'every moved client left b1 for another backend')
  t.notOk(fs.existsSync(snap), 'no snapshot before the stop (interval 1h)')

  const exit = await run1.lb.stop('SIGTERM')
  t.same(exit, { code: 0, signal: null }, 'SIGTERM: exit 0')
  t.ok(fs.existsSync(snap), 'the snapshot file exists after a graceful stop')
  t.same(fs.readdirSync(dir), ['table.json'], 'no temporary file left beside it')
  const written = snapshotEntries(snap)!
  t.equal(written.size, 100, 'the snapshot holds 100 entries')

  // b1 is up again and healthy in the new process: without the snapshot the
  // moved clients would go back to it.
  const run2 = await start(t, file)
  await checkRestored(t, run2, placed, 'after SIGTERM')
})

t.test('kill -9 with snapshot_interval 1s: the last written snapshot puts all 100 back', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const snap = path.join(tmpDir(t), 'table.json')
  const file = writeConfig(t, config(backends, snap, { snapshot_interval: '1s' }))
  const run1 = await start(t, file)
  const placed = await placeWithFailover(t, run1, backends, 1)
  t.ok(placed.moved.length >= 10, `${placed.moved.length} clients were failed over away from b2`)
  // Wait for a timer write that holds the whole current table (failovers included).
  const want = new Map(CLIENTS.map(c => [`ip:${c}`, placed.now.get(c)!]))
  await pollUntil(
    () => {
      const got = snapshotEntries(snap)
      return got !== null && got.size === want.size && [...want].every(([k, b]) => got.get(k) === b)
    },
    5_000,
    'the snapshot file to hold the current 100 entries',
  )
  run1.lb.kill('SIGKILL')
  const exit = await withTimeout(run1.lb.exited, 5_000, 'l4lb to die')
  t.equal(exit.signal, 'SIGKILL', 'killed with SIGKILL (no graceful write)')
  const run2 = await start(t, file)
  await checkRestored(t, run2, placed, 'after kill -9')
})

t.test('a bad snapshot file is logged at warn level and ignored: the table starts empty', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const dir = tmpDir(t)
  const snap = path.join(dir, 'table.json')
  const file = writeConfig(t, config(backends, snap, { snapshot_interval: '1h' }))
  // A real snapshot to damage: 20 clients, one of them moved off its home by hand.
  const run1 = await start(t, file)
  const clients = CLIENTS.slice(0, 20)
  const homes = await mapLimit(clients, 10, c => request(run1.port, c))
  t.same((await run1.lb.stop()).code, 0, 'first run stopped cleanly')
  const good = fs.readFileSync(snap)
  t.equal(snapshotEntries(snap)?.size, 20, 'a valid snapshot with 20 entries')

  const doc = JSON.parse(good.toString('utf8')) as { entries: [string, string, number][] }
  const row = doc.entries.find(([k]) => k === `ip:${clients[0]}`)!
  const other = ['b1', 'b2', 'b3'].find(b => b !== homes[0])!
  row[1] = other // valid JSON, edited entry: the checksum no longer matches
  const bad: [string, Buffer][] = [
    ['truncated (cut in half)', good.subarray(0, Math.floor(good.length / 2))],
    ['truncated (last byte missing)', good.subarray(0, good.length - 2)],
    ['empty', Buffer.alloc(0)],
    ['foreign JSON', Buffer.from('{"hello":1}\n')],
    ['random bytes', Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7919 + 13) % 256))],
    ['edited (checksum mismatch)', Buffer.from(JSON.stringify(doc) + '\n')],
  ]
  for (const [what, bytes] of bad) {
    await t.test(what, async t => {
      fs.writeFileSync(snap, bytes)
      const run = await start(t, file)
      const warn = await run.lb.waitForMsg('snapshot ignored: starting with an empty table')
      t.ok(typeof warn.level === 'number' && warn.level >= 40, `logged at warn level or above (level ${warn.level})`)
      t.equal(warn.path, snap, 'the line names the snapshot path')
      t.ok(typeof warn.reason === 'string' && warn.reason.length > 0, `with a reason: ${warn.reason}`)
      t.notOk(run.lb.lines.some(l => l.msg === 'snapshot loaded'), 'nothing was loaded')
      t.equal((await tableOf(run.admin)).size, 0, 'the table starts empty')
      t.equal(await request(run.port, clients[0]), homes[0], `${clients[0]} is placed on its ring home ${homes[0]} (the edited file said ${other})`)
      t.same((await run.lb.stop()).code, 0, 'l4lb serves and stops cleanly')
    })
  }
})

t.test('entries whose backend no longer exists are not loaded', async t => {
  const backends = await Promise.all(['b1', 'b2', 'b3'].map(n => startNamedBackend(t, n)))
  const snap = path.join(tmpDir(t), 'table.json')
  const file = writeConfig(t, config(backends, snap, { snapshot_interval: '1h' }))
  const run1 = await start(t, file)
  const clients = CLIENTS.slice(0, 60)
  const got = await mapLimit(clients, 10, c => request(run1.port, c))
  const placed = new Map(clients.map((c, i) => [`ip:${c}`, got[i]!]))
  const onB3 = [...placed.values()].filter(b => b === 'b3').length
  t.ok(onB3 > 0 && onB3 < 60, `${onB3} of 60 clients on b3`)
  t.same((await run1.lb.stop()).code, 0, 'stopped cleanly')

  // Same snapshot, config without b3.
  writeConfig(t, config(backends.slice(0, 2), snap, { snapshot_interval: '1h' }), { path: file })
  const run2 = await start(t, file)
  const loaded = await run2.lb.waitForMsg('snapshot loaded')
  t.equal(loaded.loaded, 60 - onB3, `loaded the ${60 - onB3} entries of b1 and b2`)
  t.equal(loaded.skipped, onB3, `skipped the ${onB3} entries of b3`)
  const table = await tableOf(run2.admin)
  const want = new Map([...placed].filter(([, b]) => b !== 'b3'))
  t.same(Object.fromEntries(table), Object.fromEntries(want), 'the table holds exactly the entries of b1 and b2')
})
