/**
 * SPEC §9: "A frontend whose routes and pools need no peek (all `source_ip`,
 * no `sni`/`alpn`/`protocol` conditions) never waits for client bytes, so
 * server-speaks-first protocols (SMTP, MySQL, FTP) are not delayed."
 *
 * A backend that greets first (an SMTP-like banner on accept, reading
 * nothing before it) behind: (a) a §3 frontend with `affinity.key:
 * source_ip`; (b) a frontend whose routes use only `source` and
 * `destination_port` (and its default route); (c) a frontend with `pool:`
 * naming a source_ip pool. Every frontend has `timeouts.handshake: 30s`, so
 * a peek would show as a 30 s hang; the client must get the banner within
 * 2 s without having sent a byte. The contrast: a frontend with an `sni`
 * route (and one whose pool is keyed by `sni`), handshake 1s, must close a
 * silent client with `connection refused`, reason `handshake_timeout`,
 * without dialling the backend.
 */
import t from 'tap'
import {
  connectFrom,
  readLine,
  reservePort,
  runL4lb,
  startBackend,
  withTimeout,
  writeConfig,
  type Backend,
  type TestLike,
} from '../helpers'
import { closedLine, drainUntilClose } from '../util/integration'

/** Writes `220 <name> ESMTP ready` on accept; answers QUIT with `221 bye` and closes. */
function startGreeter(t: TestLike, name: string): Promise<Backend> {
  return startBackend(t, name, sock => {
    sock.write(`220 ${name} ESMTP ready\r\n`)
    let buf = ''
    sock.setEncoding('latin1')
    sock.on('data', (c: string) => {
      buf += c
      if (buf.includes('QUIT\r\n')) sock.end('221 bye\r\n')
    })
    sock.on('end', () => sock.end())
  })
}

const BANNER_WAIT_MS = 2_000 // far below the 30 s handshake timeout

t.test('server-speaks-first backends behind frontends that need no peek', async t => {
  const mail = await startGreeter(t, 'mail1')
  const other = await startGreeter(t, 'mail2')
  const routedPort = await reservePort()
  const handshake = { handshake: '30s' }
  const file = writeConfig(t, {
    shutdown_grace: '1s',
    pools: [
      { name: 'mail', affinity: { key: 'source_ip' }, backends: [{ name: 'm1', address: mail.address }] },
      { name: 'mail-b', backends: [{ name: 'm2', address: other.address }] },
      { name: 'mail-sni', affinity: { key: 'sni' }, backends: [{ name: 'm1', address: mail.address }] },
    ],
    frontends: [
      {
        name: 'direct',
        listen: '127.0.0.1:0',
        timeouts: handshake,
        affinity: { key: 'source_ip' },
        backends: [{ name: 'm1', address: mail.address }],
      },
      {
        name: 'routed',
        listen: `127.0.0.1:${routedPort}`,
        timeouts: handshake,
        routes: [
          { name: 'office', match: { source: ['127.0.5.0/24'], destination_port: routedPort }, pool: 'mail' },
          { match: { destination_port: [1, 2] }, pool: 'mail' },
          { pool: 'mail-b' },
        ],
      },
      { name: 'pooled', listen: '127.0.0.1:0', timeouts: handshake, pool: 'mail' },
      // the contrast: these must peek
      {
        name: 'by-sni',
        listen: '127.0.0.1:0',
        timeouts: { handshake: '1s' },
        routes: [{ match: { sni: 'mail.example.com' }, pool: 'mail' }, { pool: 'mail' }],
      },
      { name: 'sni-pool', listen: '127.0.0.1:0', timeouts: { handshake: '1s' }, pool: 'mail-sni' },
    ],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const ports: Record<string, number> = {}
  for (const fe of ['direct', 'routed', 'pooled', 'by-sni', 'sni-pool']) ports[fe] = await lb.listening(fe)
  t.equal(ports.routed, routedPort, 'routed listens on the reserved port')

  const cases = [
    { what: '(a) §3 frontend, affinity.key source_ip', fe: 'direct', from: '127.0.5.10', banner: 'mail1', pool: 'direct', route: null },
    { what: '(b) routes by source and destination_port', fe: 'routed', from: '127.0.5.11', banner: 'mail1', pool: 'mail', route: 'office' },
    { what: '(b) the same frontend, its default route', fe: 'routed', from: '127.0.6.11', banner: 'mail2', pool: 'mail-b', route: '2' },
    { what: '(c) pool: with a source_ip key', fe: 'pooled', from: '127.0.5.12', banner: 'mail1', pool: 'mail', route: null },
  ] as const

  for (const c of cases) {
    await t.test(`${c.what}: the banner comes without the client sending a byte`, async t => {
      const since = lb.mark()
      const started = performance.now()
      const sock = await connectFrom(ports[c.fe]!, c.from)
      sock.on('error', () => undefined)
      const banner = await readLine(sock, BANNER_WAIT_MS)
      const waited = performance.now() - started
      t.equal(banner, `220 ${c.banner} ESMTP ready\r`, `the client got ${c.banner}'s banner having sent nothing (${waited.toFixed(0)} ms)`)
      t.equal(sock.bytesWritten, 0, 'the client had written 0 bytes')
      // and the session goes on as usual
      sock.write('QUIT\r\n')
      t.equal(await readLine(sock, BANNER_WAIT_MS), '221 bye\r', 'QUIT answered')
      const { ended } = await drainUntilClose(sock, 5_000)
      t.ok(ended, 'the backend closed the session')
      t.match(
        await closedLine(lb, c.from, since, 5_000),
        { frontend: c.fe, pool: c.pool, route: c.route, key: `ip:${c.from}`, key_source: 'socket', bytes_in: 6, reason: 'backend_closed' },
        'connection closed: pool, route, key',
      )
    })
  }

  for (const fe of ['by-sni', 'sni-pool'] as const) {
    await t.test(`contrast: ${fe === 'by-sni' ? 'an sni route' : 'a pool keyed by sni'} peeks: a silent client is closed at the 1s handshake timeout`, async t => {
      const before = mail.connections
      const since = lb.mark()
      const from = fe === 'by-sni' ? '127.0.5.20' : '127.0.5.21'
      const started = performance.now()
      const sock = await connectFrom(ports[fe]!, from)
      const { data } = await drainUntilClose(sock, 5_000)
      const waited = performance.now() - started
      t.equal(data.length, 0, 'the silent client received no banner')
      t.ok(waited >= 900, `closed at the handshake timeout, never before it (${waited.toFixed(0)} ms)`)
      t.match(
        await withTimeout(lb.waitForMsg('connection refused', { client: from }, { since, timeoutMs: 5_000 }), 6_000, 'the refused line'),
        { frontend: fe, reason: 'handshake_timeout' },
        'logged: connection refused, handshake_timeout',
      )
      t.equal(mail.connections, before, 'the backend was never dialled')
    })
  }
})
