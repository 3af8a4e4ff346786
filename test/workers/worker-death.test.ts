/**
 * A worker that dies with connections open: the primary replaces it and gives
 * back what its connections held (backend counts, key pins), so /status and
 * max_connections / least_conn are not skewed for ever.
 */
import * as fs from 'node:fs'
import type * as net from 'node:net'
import t from 'tap'
import { adminRequest, connectFrom, readLine, runL4lb, startNamedBackend, writeConfig } from '../helpers'

interface Status {
  frontends: { name: string; backends: { name: string; active: number }[] }[]
}

/** Child pids of a process, from /proc (the workers of the l4lb primary). */
function children(pid: number): number[] {
  const out: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(d))
    } catch {
      // the process went away while we looked
    }
  }
  return out
}

t.test('a dead worker is replaced and its connections are released', async t => {
  const b1 = await startNamedBackend(t, 'b1')
  const file = writeConfig(t, {
    workers: 2,
    shutdown_grace: '1s',
    admin: { listen: '127.0.0.1:0' },
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], backends: [{ name: 'b1', address: b1.address }] }],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening('fe')
  const admin = await lb.adminPort()
  await lb.waitForMsg('workers ready', { workers: 2 })
  const active = async () => ((await adminRequest(admin, 'GET', '/status')).json() as Status).frontends[0]!.backends[0]!.active

  // Hold 12 connections open, from distinct clients, spread over both workers.
  const socks: net.Socket[] = []
  for (let i = 1; i <= 12; i++) {
    const s = await connectFrom(port, `127.0.52.${i}`)
    t.teardown(() => s.destroy())
    t.equal(await readLine(s), 'b1', `client ${i} reached b1`)
    socks.push(s)
  }
  t.equal(await active(), 12, '/status: 12 open connections on b1')

  const workers = children(lb.pid)
  t.equal(workers.length, 2, 'two worker processes')
  const victim = workers[0]!
  const m = lb.mark()
  process.kill(victim, 'SIGKILL')
  const released = await lb.waitForMsg('released the connections of a dead worker', {}, { since: m })
  const lost = released.connections as number
  t.ok(lost > 0 && lost < 12, `the dead worker held some of the connections (${lost})`)
  // The log line comes after the release, so /status shows it already.
  t.equal(await active(), 12 - lost, `/status: ${12 - lost} open connections left, none counted for the dead worker`)

  // A replacement serves: new clients keep working.
  await lb.waitFor(l => l.msg === 'worker died; starting another', { since: m })
  for (let i = 20; i < 26; i++) {
    const s = await connectFrom(port, `127.0.52.${i}`)
    t.equal(await readLine(s), 'b1', `new client ${i} served after the worker died`)
    s.destroy()
  }
})
