/**
 * SPEC §9 routes as a matrix: one l4lb, nine pools of one named backend each
 * (it greets with its name, then echoes), and a frontend `fe` whose routes mix
 * an exact server name, a `*.suffix` name (one and two labels deep), a name
 * plus a `source` CIDR (both must hold), `alpn`, `protocol: ssh`,
 * `protocol: http`, `destination_port` (a second listen address) and a
 * default route last; a frontend `strict` has no default route.
 *
 * Each case is a row of data (who connects, from where, to which port, with
 * which name / ALPN / first bytes) → the route and pool it must take. Real
 * clients: `openssl s_client` (with -bind for the source address), node:tls,
 * and plain sockets writing an SSH banner, an HTTP request line or other
 * bytes. The backends speak plain TCP, so TLS clients see garbage instead of
 * a ServerHello; the test reads the raw bytes underneath: the greeting names
 * the backend that answered, and the echo after it shows the ClientHello
 * arrived unchanged. The `connection closed` line must name the same pool,
 * route and backend, and `l4lb explain --json` must agree for the TLS rows.
 */
import * as net from 'node:net'
import * as tls from 'node:tls'
import { Duplex } from 'node:stream'
import t from 'tap'
import {
  connectFrom,
  findTool,
  requireTool,
  reservePort,
  runCli,
  runL4lb,
  runProcess,
  startNamedBackend,
  withTimeout,
  writeConfig,
  type Backend,
  type LogLine,
} from '../helpers'
import { closedLine, drainUntilClose, mapLimit } from '../util/integration'

// ------------------------------------------------------------ the matrix

type Client =
  | { kind: 'openssl'; sni?: string; alpn?: string[] }
  | { kind: 'tls'; sni?: string; alpn?: string[] }
  | { kind: 'plain'; bytes: string }

interface Case {
  what: string
  from: string
  frontend?: 'fe' | 'strict'
  /** Which listen address of `fe` (default main). */
  port?: 'main' | 'alt'
  client: Client
  /** The route label and pool it must take; null: refused with no_route. */
  expect: { route: string; pool: string } | null
}

const POOLS = ['exact', 'wild', 'office', 'pg', 'web', 'ssh', 'http', 'alt', 'fallback'] as const
/** Backend names differ from pool names, so a log that confused the two would show. */
const backendOf = (pool: string): string => `b-${pool}`

const SSH = 'SSH-2.0-OpenSSH_9.2\r\n'

const CASES: Case[] = [
  // exact names: case-insensitive, trailing dot ignored
  { what: 'exact sni (openssl)', from: '127.0.0.10', client: { kind: 'openssl', sni: 'db.example.com' }, expect: { route: 'exact', pool: 'exact' } },
  { what: 'exact sni, other case and a trailing dot', from: '127.0.0.11', client: { kind: 'tls', sni: 'DB.Example.COM.' }, expect: { route: 'exact', pool: 'exact' } },
  // *.suffix: one or more labels, never the bare suffix or a longer last label
  { what: '*.suffix one label deep (openssl)', from: '127.0.0.12', client: { kind: 'openssl', sni: 'a.apps.example.com' }, expect: { route: 'wild', pool: 'wild' } },
  { what: '*.suffix two labels deep', from: '127.0.0.13', client: { kind: 'tls', sni: 'x.y.apps.example.com' }, expect: { route: 'wild', pool: 'wild' } },
  { what: 'the bare suffix is not *.suffix', from: '127.0.0.14', client: { kind: 'tls', sni: 'apps.example.com' }, expect: { route: 'default', pool: 'fallback' } },
  { what: 'a label ending in the suffix is not *.suffix', from: '127.0.0.15', client: { kind: 'tls', sni: 'evilapps.example.com' }, expect: { route: 'default', pool: 'fallback' } },
  // sni + source: both must hold (route without a name: its index)
  { what: 'sni + source, inside the CIDR', from: '127.0.0.70', client: { kind: 'tls', sni: 'intranet.example.com' }, expect: { route: '2', pool: 'office' } },
  { what: 'sni + source, inside the CIDR (openssl -bind)', from: '127.0.0.127', client: { kind: 'openssl', sni: 'intranet.example.com' }, expect: { route: '2', pool: 'office' } },
  { what: 'sni + source, right name outside the CIDR', from: '127.0.0.20', client: { kind: 'openssl', sni: 'intranet.example.com' }, expect: { route: 'default', pool: 'fallback' } },
  // alpn: any of the listed names offered
  { what: 'alpn postgresql (openssl)', from: '127.0.0.21', client: { kind: 'openssl', sni: 'foo.example.org', alpn: ['postgresql'] }, expect: { route: 'pg', pool: 'pg' } },
  { what: 'alpn h2 offered second', from: '127.0.0.22', client: { kind: 'tls', sni: 'foo.example.org', alpn: ['http/1.1', 'h2'] }, expect: { route: 'h2', pool: 'web' } },
  { what: 'alpn h2 without SNI (openssl -noservername)', from: '127.0.0.23', client: { kind: 'openssl', alpn: ['h2'] }, expect: { route: 'h2', pool: 'web' } },
  { what: 'alpn not listed', from: '127.0.0.24', client: { kind: 'tls', sni: 'foo.example.org', alpn: ['http/1.1'] }, expect: { route: 'default', pool: 'fallback' } },
  { what: 'first match wins: exact sni before alpn', from: '127.0.0.25', client: { kind: 'tls', sni: 'db.example.com', alpn: ['h2'] }, expect: { route: 'exact', pool: 'exact' } },
  { what: 'TLS without SNI or ALPN', from: '127.0.0.26', client: { kind: 'tls' }, expect: { route: 'default', pool: 'fallback' } },
  // protocol sniffing
  { what: 'an SSH banner', from: '127.0.0.30', client: { kind: 'plain', bytes: SSH }, expect: { route: 'ssh', pool: 'ssh' } },
  { what: 'an HTTP/1 GET request line', from: '127.0.0.31', client: { kind: 'plain', bytes: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' }, expect: { route: 'http', pool: 'http' } },
  { what: 'an HTTP/1 POST request line', from: '127.0.0.32', client: { kind: 'plain', bytes: 'POST /submit HTTP/1.1\r\n\r\n' }, expect: { route: 'http', pool: 'http' } },
  { what: 'other bytes', from: '127.0.0.33', client: { kind: 'plain', bytes: 'hello there\n' }, expect: { route: 'default', pool: 'fallback' } },
  // destination_port (the second listen address), in route order
  { what: 'other bytes to the second port', from: '127.0.0.40', port: 'alt', client: { kind: 'plain', bytes: 'hello there\n' }, expect: { route: 'alt-port', pool: 'alt' } },
  { what: 'unrouted sni to the second port', from: '127.0.0.41', port: 'alt', client: { kind: 'tls', sni: 'other.example.net' }, expect: { route: 'alt-port', pool: 'alt' } },
  { what: 'exact sni to the second port: the earlier route wins', from: '127.0.0.42', port: 'alt', client: { kind: 'openssl', sni: 'db.example.com' }, expect: { route: 'exact', pool: 'exact' } },
  { what: 'SSH to the second port: the earlier route wins', from: '127.0.0.43', port: 'alt', client: { kind: 'plain', bytes: SSH }, expect: { route: 'ssh', pool: 'ssh' } },
  // a frontend without a default route
  { what: 'strict: exact sni', from: '127.0.0.50', frontend: 'strict', client: { kind: 'openssl', sni: 'db.example.com' }, expect: { route: 'db', pool: 'exact' } },
  { what: 'strict: SSH (unnamed route)', from: '127.0.0.51', frontend: 'strict', client: { kind: 'plain', bytes: SSH }, expect: { route: '1', pool: 'ssh' } },
  { what: 'strict: an unrouted name is refused', from: '127.0.0.52', frontend: 'strict', client: { kind: 'tls', sni: 'other.example.net' }, expect: null },
  { what: 'strict: HTTP is refused', from: '127.0.0.53', frontend: 'strict', client: { kind: 'plain', bytes: 'GET / HTTP/1.1\r\n\r\n' }, expect: null },
]

function routesOf(altPort: number): unknown[] {
  return [
    { name: 'exact', match: { sni: ['db.example.com'] }, pool: 'exact' },
    { name: 'wild', match: { sni: ['*.apps.example.com'] }, pool: 'wild' },
    { match: { sni: ['intranet.example.com'], source: ['127.0.0.64/26'] }, pool: 'office' },
    { name: 'pg', match: { alpn: ['postgresql'] }, pool: 'pg' },
    { name: 'h2', match: { alpn: ['h2', 'acme-tls/1'] }, pool: 'web' },
    { name: 'ssh', match: { protocol: 'ssh' }, pool: 'ssh' },
    { name: 'http', match: { protocol: ['http'] }, pool: 'http' },
    { name: 'alt-port', match: { destination_port: altPort }, pool: 'alt' },
    { name: 'default', pool: 'fallback' },
  ]
}

// ------------------------------------------------------------ clients

/** What a client saw: the backend's greeting line, and the bytes after it (the echo). */
interface Seen {
  greeting: string
  echo: Buffer
  /** What the client wrote first (for TLS: its ClientHello). */
  sent: Buffer
}

/** Length of the complete ClientHello records at the start of `buf`, or -1. */
function helloEnd(buf: Buffer): number {
  let off = 0
  let have = 0
  let want = -1
  while (off + 5 <= buf.length) {
    const len = buf.readUInt16BE(off + 3)
    if (off + 5 + len > buf.length) return -1
    if (want < 0 && len >= 4) want = 4 + buf.readUIntBE(off + 6, 3)
    have += len
    off += 5 + len
    if (want >= 0 && have >= want) return off
  }
  return -1
}

/** Splits received bytes into the greeting line and what follows. */
function splitGreeting(buf: Buffer): { greeting: string; echo: Buffer } | null {
  const nl = buf.indexOf(0x0a)
  return nl < 0 ? null : { greeting: buf.subarray(0, nl).toString('latin1'), echo: buf.subarray(nl + 1) }
}

/** Resolves once `pred(received so far)` holds (or the peer closes: then with what there is). */
function receive(sock: net.Socket, pred: (buf: Buffer) => boolean, what: string, ms = 5_000): Promise<Buffer> {
  let buf = Buffer.alloc(0)
  return withTimeout(
    new Promise<Buffer>(resolve => {
      const check = (): void => {
        if (pred(buf)) {
          sock.off('data', onData)
          resolve(buf)
        }
      }
      const onData = (c: Buffer): void => {
        buf = Buffer.concat([buf, c])
        check()
      }
      sock.on('data', onData)
      sock.once('close', () => resolve(buf))
      check()
    }),
    ms,
    what,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (received ${JSON.stringify(buf.toString('latin1'))})`)
  })
}

/**
 * A node:tls client over a Duplex that records what it writes and lets the
 * test read the raw bytes that come back (the TLS layer fails on them).
 */
async function nodeTls(port: number, from: string, sni?: string, alpn?: string[]): Promise<Seen> {
  const raw = await connectFrom(port, from)
  raw.on('error', () => undefined)
  const sent: Buffer[] = []
  const wire = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      sent.push(Buffer.from(chunk))
      raw.write(chunk, () => cb())
    },
    final(cb) {
      raw.end()
      cb()
    },
    read() {},
  })
  const opts: tls.ConnectionOptions = { socket: wire, rejectUnauthorized: false }
  if (sni !== undefined) opts.servername = sni
  if (alpn !== undefined) opts.ALPNProtocols = alpn
  const got = receive(
    raw,
    buf => {
      const s = splitGreeting(buf)
      const hello = Buffer.concat(sent)
      return s !== null && hello.length > 0 && helloEnd(hello) > 0 && s.echo.length >= helloEnd(hello)
    },
    `greeting and echoed ClientHello at ${from}`,
  )
  raw.on('data', (c: Buffer) => wire.push(c))
  raw.on('end', () => wire.push(null))
  const sock = tls.connect(opts)
  sock.on('error', () => undefined) // a plain TCP backend never sends a ServerHello
  try {
    const buf = await got
    const s = splitGreeting(buf) ?? { greeting: '', echo: buf }
    const all = Buffer.concat(sent)
    return { ...s, sent: all.subarray(0, Math.max(0, helloEnd(all))) }
  } finally {
    sock.destroy()
    raw.destroy()
  }
}

/** Bytes of `openssl s_client -debug` hex dumps, by direction. */
function parseDebug(out: string): { written: Buffer; read: Buffer } {
  const written: number[] = []
  const read: number[] = []
  let into: number[] | null = null
  for (const line of out.split('\n')) {
    if (/^write to 0x/.test(line)) into = written
    else if (/^read from 0x/.test(line)) into = read
    else if (into !== null && /^[0-9a-f]{4} - /.test(line)) {
      for (const h of line.slice(7, 7 + 48).match(/[0-9a-f]{2}/g) ?? []) into.push(parseInt(h, 16))
    } else into = null
  }
  return { written: Buffer.from(written), read: Buffer.from(read) }
}

async function openssl(bin: string, port: number, from: string, sni?: string, alpn?: string[]): Promise<Seen> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-bind', from, '-debug']
  args.push(...(sni !== undefined ? ['-servername', sni] : ['-noservername']))
  if (alpn !== undefined) args.push('-alpn', alpn.join(','))
  // stdin closed; s_client fails the handshake on the greeting and exits
  const r = await runProcess(bin, args, { input: '', timeoutMs: 15_000 })
  const { written, read } = parseDebug(r.stdout)
  const s = splitGreeting(read) ?? { greeting: '', echo: read }
  return { ...s, sent: written.subarray(0, Math.max(0, helloEnd(written))) }
}

/** A plain socket writes `bytes`, reads the greeting and the echo, then ends. */
async function plain(port: number, from: string, bytes: string): Promise<Seen> {
  const sock = await connectFrom(port, from)
  sock.on('error', () => undefined)
  const sent = Buffer.from(bytes, 'latin1')
  const got = receive(
    sock,
    buf => {
      const s = splitGreeting(buf)
      return s !== null && s.echo.length >= sent.length
    },
    `greeting and echo at ${from}`,
  )
  sock.write(sent)
  try {
    const s = splitGreeting(await got) ?? { greeting: '', echo: Buffer.alloc(0) }
    return { ...s, sent }
  } finally {
    sock.end()
    sock.destroy()
  }
}

/** A client that must be refused: every raw byte it receives until l4lb closes it. */
async function refusedClient(port: number, c: Case): Promise<Buffer> {
  const raw = await connectFrom(port, c.from)
  const closing = drainUntilClose(raw, 5_000)
  if (c.client.kind === 'plain') {
    raw.write(c.client.bytes)
  } else {
    // over a Duplex, so the raw socket's 'data' (what drainUntilClose records) stays observable
    const wire = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        if (!raw.destroyed) raw.write(chunk)
        cb()
      },
      read() {},
    })
    raw.on('data', (chunk: Buffer) => wire.push(chunk))
    const opts: tls.ConnectionOptions = { socket: wire, rejectUnauthorized: false }
    if (c.client.sni !== undefined) opts.servername = c.client.sni
    if (c.client.alpn !== undefined) opts.ALPNProtocols = c.client.alpn
    const sock = tls.connect(opts)
    sock.on('error', () => undefined)
    raw.once('close', () => sock.destroy())
  }
  return (await closing).data
}

// ------------------------------------------------------------ the test

t.test('route matrix: each client reaches the pool its first matching route names', async t => {
  if (!requireTool(t, 'openssl')) return
  const bin = findTool('openssl')!
  const backends = new Map<string, Backend>()
  for (const p of POOLS) backends.set(p, await startNamedBackend(t, backendOf(p)))
  const altPort = await reservePort()
  const file = writeConfig(t, {
    shutdown_grace: '1s',
    pools: POOLS.map(p => ({ name: p, backends: [{ name: backendOf(p), address: backends.get(p)!.address }] })),
    frontends: [
      { name: 'fe', listen: ['127.0.0.1:0', `127.0.0.1:${altPort}`], timeouts: { handshake: '5s' }, routes: routesOf(altPort) },
      {
        name: 'strict',
        listen: '127.0.0.1:0',
        timeouts: { handshake: '5s' },
        routes: [
          { name: 'db', match: { sni: 'db.example.com' }, pool: 'exact' },
          { match: { protocol: 'ssh' }, pool: 'ssh' },
        ],
      },
    ],
  })
  const lb = runL4lb(t, ['run', '-c', file])
  const ports = {
    main: Number((await lb.waitFor(l => l.msg === 'listening' && l.frontend === 'fe' && l.port !== altPort, { what: 'the first listener of fe' })).port),
    alt: Number((await lb.waitForMsg('listening', { frontend: 'fe', port: altPort })).port),
    strict: await lb.listening('strict'),
  }
  const portOf = (c: Case): number => (c.frontend === 'strict' ? ports.strict : ports[c.port ?? 'main'])
  const total = (): number => [...backends.values()].reduce((n, b) => n + b.connections, 0)

  const live = new Map<Case, LogLine>()
  for (const c of CASES) {
    await t.test(`${c.what}: ${c.from} → ${c.expect === null ? 'no_route' : `route ${c.expect.route}, pool ${c.expect.pool}`}`, async t => {
      const port = portOf(c)
      const fe = c.frontend ?? 'fe'
      const since = lb.mark()
      if (c.expect === null) {
        const before = total()
        const data = await refusedClient(port, c)
        t.equal(data.length, 0, 'the refused client received nothing')
        const line = await lb.waitForMsg('connection refused', { client: c.from }, { since, timeoutMs: 5_000 })
        t.match(line, { frontend: fe, reason: 'no_route' }, 'logged: connection refused, no_route')
        t.equal(total(), before, 'no backend was dialled')
        live.set(c, line)
        return
      }
      const want = c.expect
      const cl = c.client
      const seen =
        cl.kind === 'openssl'
          ? await openssl(bin, port, c.from, cl.sni, cl.alpn)
          : cl.kind === 'tls'
            ? await nodeTls(port, c.from, cl.sni, cl.alpn)
            : await plain(port, c.from, cl.bytes)
      t.equal(seen.greeting, backendOf(want.pool), `the client was answered by ${backendOf(want.pool)}`)
      t.ok(seen.sent.length > 0, `the client sent its first bytes (${seen.sent.length})`)
      t.ok(
        seen.echo.subarray(0, seen.sent.length).equals(seen.sent),
        cl.kind === 'plain' ? 'the backend got the bytes unchanged (echoed back)' : 'the backend got the ClientHello unchanged (echoed back)',
      )
      const line = await closedLine(lb, c.from, since, 5_000)
      t.match(line, { frontend: fe, pool: want.pool, route: want.route, backend: backendOf(want.pool) }, 'connection closed: pool, route, backend')
      live.set(c, line)
    })
  }

  await t.test('l4lb explain --json agrees with the live route and pool of every TLS row', async t => {
    const tlsCases = CASES.filter(c => c.client.kind !== 'plain')
    const answers = await mapLimit(tlsCases, 4, async c => {
      const cl = c.client as Exclude<Client, { kind: 'plain' }>
      const args = ['explain', '-c', file, '--client', c.from, '--frontend', c.frontend ?? 'fe', '--port', String(portOf(c)), '--json']
      if (cl.sni !== undefined) args.push('--sni', cl.sni)
      for (const p of cl.alpn ?? []) args.push('--alpn', p)
      const r = await runCli(args)
      if (r.code !== 0) throw new Error(`explain ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
      return JSON.parse(r.stdout) as Record<string, unknown>
    })
    tlsCases.forEach((c, i) => {
      const e = answers[i]!
      const l = live.get(c)
      if (c.expect === null) {
        t.match(e, { frontend: c.frontend ?? 'fe', route: null, pool: null, backend: null }, `${c.what}: explain says no route`)
      } else {
        t.match(e, { frontend: c.frontend ?? 'fe', route: c.expect.route, pool: c.expect.pool, backend: backendOf(c.expect.pool) }, `${c.what}: explain`)
        t.ok(l !== undefined, `${c.what}: has a live line`)
        if (l) t.same([e.route, e.pool, e.backend, e.key], [l.route, l.pool, l.backend, l.key], `${c.what}: explain = the live connection (route, pool, backend, key)`)
      }
    })
  })
})
