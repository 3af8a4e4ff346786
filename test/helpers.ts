/**
 * Test helpers for l4lb: loopback backends on port 0, a refusing and a
 * black-hole address, config files in temporary dirs, the l4lb process with
 * its pino lines parsed, clients with a chosen source address, and
 * time-bounded waits so a hung test fails with a message instead of hanging.
 *
 * Everything binds 127.0.0.1 (or ::1 when asked) and port 0: no fixed ports,
 * no traffic off the host. Every resource is released in `t.teardown`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

/** The part of a tap `Test` the resource helpers need. */
export interface TestLike {
  teardown(fn: () => unknown): void
}

/** The part of a tap `Test` `requireTool` needs. */
export interface AssertingTest extends TestLike {
  pass(message: string, extra: { skip: string }): boolean
  fail(message: string): boolean
}

export const REPO_ROOT = path.resolve(__dirname, '..')
export const L4LB_BIN = path.join(REPO_ROOT, 'bin', 'l4lb')
export const CLI_MAIN = path.join(REPO_ROOT, 'dist', 'cli', 'main.js')

const DEFAULT_WAIT_MS = 5_000

// ---------------------------------------------------------------- timeouts

/** Settles like `p`, or rejects after `ms` with "timed out after ... waiting for WHAT". */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/**
 * `events.once` with a deadline: resolves with the event's arguments,
 * rejects on timeout (naming the event) or on an 'error' event.
 */
export async function waitForEvent(
  emitter: EventEmitter,
  event: string,
  timeoutMs = DEFAULT_WAIT_MS,
  what = `'${event}' event`,
): Promise<unknown[]> {
  const ac = new AbortController()
  try {
    return await withTimeout(once(emitter, event, { signal: ac.signal }), timeoutMs, what)
  } finally {
    ac.abort() // removes the listener if we timed out
  }
}

// ---------------------------------------------------------------- addresses

/** `host:port`, or `[host]:port` for IPv6, as l4lb configs write addresses. */
export function formatAddress(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}

async function listen(server: net.Server, port: number, host: string, backlog?: number): Promise<number> {
  server.listen(backlog === undefined ? { port, host } : { port, host, backlog })
  await waitForEvent(server, 'listening', DEFAULT_WAIT_MS, `listen on ${formatAddress(host, port)}`)
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address')
  return addr.port
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise(resolve => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
  })
}

/**
 * A port on `host` with nothing listening (bound on port 0, then closed):
 * connecting to it is refused. Another process could take it meanwhile; on
 * a test machine that is rare enough.
 */
export async function reservePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer()
  const port = await listen(server, 0, host)
  await closeServer(server)
  return port
}

/** `host:port` where a connect is refused at once (see `reservePort`). */
export async function refusingAddress(host = '127.0.0.1'): Promise<string> {
  return formatAddress(host, await reservePort(host))
}

export interface Blackhole {
  readonly host: string
  readonly port: number
  readonly address: string
  close(): Promise<void>
}

// Runs in a worker thread: listen with backlog 1, report the port, then block
// the thread (and so its event loop) until told to stop, so nothing is ever
// accepted. A worker, not a child process, so it cannot outlive the test.
const BLACKHOLE_WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const net = require('node:net')
const flag = new Int32Array(workerData.flag)
const server = net.createServer()
server.on('error', err => { parentPort.postMessage({ error: String(err) }); process.exit(1) })
server.listen({ port: 0, host: workerData.host, backlog: 1 }, () => {
  parentPort.postMessage({ port: server.address().port })
  Atomics.wait(flag, 0, 0, workerData.maxMs)
  process.exit(0)
})
`

/**
 * An address where a TCP connect neither succeeds nor is refused: it times
 * out. A listener with backlog 1 that never accepts has its accept queue
 * filled by two held connections; Linux then drops further SYNs, so the
 * client keeps retransmitting its SYN until its own connect timeout.
 * Loopback only.
 */
export async function blackholeAddress(t: TestLike, opts: { host?: string } = {}): Promise<Blackhole> {
  const host = opts.host ?? '127.0.0.1'
  const flag = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(BLACKHOLE_WORKER, {
    eval: true,
    workerData: { flag: flag.buffer, host, maxMs: 10 * 60_000 },
  })
  const exited = once(worker, 'exit').catch(() => undefined)
  const held: net.Socket[] = []
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    Atomics.store(flag, 0, 1)
    Atomics.notify(flag, 0)
    for (const s of held) s.destroy()
    await withTimeout(exited, DEFAULT_WAIT_MS, 'black-hole worker to stop').catch(() => worker.terminate())
  }
  t.teardown(close)
  const [msg] = (await waitForEvent(worker, 'message', DEFAULT_WAIT_MS, 'black-hole listener')) as [
    { port?: number; error?: string },
  ]
  if (msg.port === undefined) throw new Error(`black-hole listener failed: ${msg.error ?? 'unknown error'}`)
  const port = msg.port
  // Fill the accept queue (backlog + 1 on Linux). A fill connection that does
  // not complete means the queue is already full: drop it and stop.
  for (let i = 0; i < 2; i++) {
    const s = net.connect({ port, host })
    s.on('error', () => s.destroy()) // held open only to occupy the queue
    held.push(s)
    try {
      await waitForEvent(s, 'connect', 2_000, 'black-hole queue filler')
    } catch {
      s.destroy()
      break
    }
  }
  return { host, port, address: formatAddress(host, port), close }
}

// ---------------------------------------------------------------- backends

export interface BackendOptions {
  /** Default 127.0.0.1; '::1' for IPv6. Loopback only. */
  host?: string
  /** Default 0. Pass a port from an earlier backend to bring it "back". */
  port?: number
}

export interface Backend {
  readonly name: string
  readonly host: string
  readonly port: number
  /** `127.0.0.1:PORT` (or `[::1]:PORT`), ready for a config's `address`. */
  readonly address: string
  /** Connections accepted so far. */
  readonly connections: number
  /** Connections open now. */
  readonly active: number
  /** Peer address (`remoteAddress`) of every accepted connection, in order. */
  readonly clients: readonly string[]
  /** Socket errors seen on accepted connections (resets are normal in tests). */
  readonly errors: readonly Error[]
  readonly server: net.Server
  readonly sockets: ReadonlySet<net.Socket>
  /** Resolves with the next connection accepted from now on. */
  nextConnection(timeoutMs?: number): Promise<net.Socket>
  /** Resolves once `connections >= n`. */
  waitForConnections(n: number, timeoutMs?: number): Promise<void>
  /** Close the listener only: new connections are refused, open ones carry on. */
  stopListening(): void
  /** Close the listener and destroy every open connection. Idempotent. */
  close(): Promise<void>
}

/**
 * A loopback TCP server on port 0 running `handler` for each connection
 * (`allowHalfOpen`, so a handler decides when its side ends). Closed in
 * `t.teardown`. The named and echo backends are built on it.
 */
export async function startBackend(
  t: TestLike,
  name: string,
  handler: (socket: net.Socket) => void,
  opts: BackendOptions = {},
): Promise<Backend> {
  const host = opts.host ?? '127.0.0.1'
  const sockets = new Set<net.Socket>()
  const clients: string[] = []
  const errors: Error[] = []
  const events = new EventEmitter()
  let connections = 0
  const server = net.createServer({ allowHalfOpen: true }, socket => {
    connections++
    clients.push(socket.remoteAddress ?? '')
    sockets.add(socket)
    socket.on('error', err => errors.push(err))
    socket.on('close', () => sockets.delete(socket))
    handler(socket)
    events.emit('connection', socket)
  })
  const port = await listen(server, opts.port ?? 0, host)
  let closing: Promise<void> | undefined
  const backend: Backend = {
    name,
    host,
    port,
    address: formatAddress(host, port),
    get connections() {
      return connections
    },
    get active() {
      return sockets.size
    },
    clients,
    errors,
    server,
    sockets,
    async nextConnection(timeoutMs = DEFAULT_WAIT_MS) {
      const [socket] = await waitForEvent(events, 'connection', timeoutMs, `a connection to backend ${name}`)
      return socket as net.Socket
    },
    async waitForConnections(n, timeoutMs = DEFAULT_WAIT_MS) {
      const ac = new AbortController()
      const reached = (async (): Promise<void> => {
        while (connections < n) await once(events, 'connection', { signal: ac.signal })
      })()
      reached.catch(() => undefined) // aborted after a timeout
      try {
        await withTimeout(reached, timeoutMs, `backend ${name} to have ${n} connections`)
      } catch (err) {
        throw new Error(`${(err as Error).message} (has ${connections})`)
      } finally {
        ac.abort()
      }
    },
    stopListening() {
      if (server.listening) server.close()
    },
    close() {
      closing ??= (async () => {
        const done = server.listening ? closeServer(server) : Promise.resolve()
        for (const s of sockets) s.destroy()
        await done
      })()
      return closing
    },
  }
  t.teardown(() => backend.close())
  return backend
}

/**
 * A backend that writes `${name}\n` on each connection, then echoes what it
 * receives, ending its side after the client ends.
 */
export function startNamedBackend(t: TestLike, name: string, opts: BackendOptions = {}): Promise<Backend> {
  return startBackend(
    t,
    name,
    socket => {
      socket.write(`${name}\n`)
      socket.pipe(socket)
    },
    opts,
  )
}

/** A pure echo backend: no greeting; when the client ends, it ends after flushing. */
export function startEchoBackend(t: TestLike, opts: BackendOptions & { name?: string } = {}): Promise<Backend> {
  return startBackend(t, opts.name ?? 'echo', socket => socket.pipe(socket), opts)
}

// ---------------------------------------------------------------- clients

/**
 * Connects to `host:port` from `localAddress` (any 127.x.y.z works on Linux
 * loopback, so tests can play many client IPs). Resolves once connected.
 */
export async function connectFrom(
  port: number,
  localAddress?: string,
  host = '127.0.0.1',
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<net.Socket> {
  const socket = net.connect(localAddress === undefined ? { port, host } : { port, host, localAddress })
  try {
    await waitForEvent(socket, 'connect', timeoutMs, `connect to ${formatAddress(host, port)}`)
  } catch (err) {
    socket.destroy()
    const from = localAddress === undefined ? '' : ` from ${localAddress}`
    throw new Error(`connect to ${formatAddress(host, port)}${from} failed: ${(err as Error).message}`)
  }
  return socket
}

/**
 * Reads one `\n`-terminated line (returned without the `\n`). Bytes after
 * it are pushed back onto the socket for the next reader.
 */
export function readLine(socket: net.Socket, timeoutMs = DEFAULT_WAIT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const finish = (err: Error | null, line?: string): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      socket.off('error', onError)
      if (err) reject(err)
      else resolve(line ?? '')
    }
    const onReadable = (): void => {
      let chunk: Buffer | null
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, chunk])
        const nl = buf.indexOf(0x0a)
        if (nl >= 0) {
          const rest = buf.subarray(nl + 1)
          if (rest.length > 0) socket.unshift(rest)
          return finish(null, buf.subarray(0, nl).toString('utf8'))
        }
      }
    }
    const got = (): string => JSON.stringify(buf.toString('utf8'))
    const onEnd = (): void => finish(new Error(`connection ended before a full line (got ${got()})`))
    const onError = (err: Error): void => finish(new Error(`socket error before a full line: ${err.message} (got ${got()})`))
    const timer = setTimeout(
      () => finish(new Error(`timed out after ${timeoutMs}ms waiting for a line (got ${got()})`)),
      timeoutMs,
    )
    socket.on('readable', onReadable)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
    socket.on('error', onError)
    onReadable()
    if (socket.readableEnded) onEnd()
  })
}

/** The first line a named backend sends: its name. */
export const readGreeting = readLine

/** Collects everything until the peer ends. */
export async function readAll(socket: net.Socket, timeoutMs = DEFAULT_WAIT_MS): Promise<Buffer> {
  const chunks: Buffer[] = []
  const onData = (c: Buffer): number => chunks.push(c)
  socket.on('data', onData)
  try {
    if (!socket.readableEnded) await waitForEvent(socket, 'end', timeoutMs, 'the peer to end the connection')
  } finally {
    socket.off('data', onData)
  }
  return Buffer.concat(chunks)
}

/**
 * One short connection through l4lb to a named backend: connect (from
 * `localAddress`), read the greeting, end, wait for the close. Returns the
 * backend name.
 */
export async function request(
  port: number,
  localAddress?: string,
  opts: { host?: string; timeoutMs?: number } = {},
): Promise<string> {
  const host = opts.host ?? '127.0.0.1'
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS
  const socket = await connectFrom(port, localAddress, host, timeoutMs)
  try {
    const name = await readLine(socket, timeoutMs)
    const closed = waitForEvent(socket, 'close', timeoutMs, `close after ending the request to ${formatAddress(host, port)}`)
    socket.end()
    socket.resume() // drain anything else, so 'end' and 'close' can come
    await closed
    return name
  } finally {
    socket.destroy()
  }
}

// ---------------------------------------------------------------- admin HTTP

export interface HttpResult {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  /** `JSON.parse(text)`, throwing with the body in the message if it is not JSON. */
  json(): unknown
}

/** One HTTP request to the admin listener on loopback. */
export function adminRequest(
  port: number,
  method: string,
  urlPath: string,
  opts: { token?: string; body?: string; host?: string; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS
  const headers: http.OutgoingHttpHeaders = {}
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  const p = new Promise<HttpResult>((resolve, reject) => {
    const req = http.request(
      { host: opts.host ?? '127.0.0.1', port, method, path: urlPath, headers, agent: false },
      res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', reject)
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json() {
              try {
                return JSON.parse(text) as unknown
              } catch {
                throw new Error(`${method} ${urlPath}: body is not JSON: ${JSON.stringify(text.slice(0, 500))}`)
              }
            },
          })
        })
      },
    )
    req.on('error', reject)
    req.end(opts.body)
  })
  return withTimeout(p, timeoutMs, `${method} ${urlPath} on admin port ${port}`)
}

// ---------------------------------------------------------------- files

/** A fresh temporary directory, removed in `t.teardown`. */
export function tmpDir(t: TestLike): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l4lb-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * Writes a config file and returns its path. An object is written as JSON
 * text (valid YAML too); a string is written verbatim. `path` rewrites an
 * earlier file (for SIGHUP reloads); otherwise a new temp dir holds
 * `l4lb.yaml` (or `l4lb.json` with `ext: 'json'`).
 */
export function writeConfig(
  t: TestLike,
  config: unknown,
  opts: { path?: string; ext?: 'yaml' | 'json' } = {},
): string {
  const file = opts.path ?? path.join(tmpDir(t), `l4lb.${opts.ext ?? 'yaml'}`)
  const text = typeof config === 'string' ? config : JSON.stringify(config, null, 2) + '\n'
  fs.writeFileSync(file, text)
  return file
}

// ---------------------------------------------------------------- processes

/** A parsed stdout line: a pino object, or `{raw}` for a non-JSON line. */
export interface LogLine {
  [field: string]: unknown
  msg?: string
  level?: number | string
  raw?: string
}

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface WaitOptions {
  /** Default 10 000 ms. */
  timeoutMs?: number
  /** Only lines with index >= since (see `mark()`); default 0 = from the start. */
  since?: number
  /** Describes the awaited line in failure messages. */
  what?: string
}

export interface LoggedProcess {
  readonly proc: ChildProcess
  readonly pid: number
  /** Every stdout line so far, parsed. */
  readonly lines: readonly LogLine[]
  readonly stdout: string
  readonly stderr: string
  /** Resolves when the process has exited and its output is read (never rejects). */
  readonly exited: Promise<ExitInfo>
  /** Set once exited. */
  readonly exit: ExitInfo | null
  /** The first line, past or future, matching `pred`. */
  waitFor(pred: (line: LogLine) => boolean, opts?: number | WaitOptions): Promise<LogLine>
  /** The first line with this `msg` whose fields equal those in `fields`. */
  waitForMsg(msg: string, fields?: Record<string, unknown>, opts?: number | WaitOptions): Promise<LogLine>
  /** Index of the next line: pass as `since` to wait only for lines logged later. */
  mark(): number
  /** Sends a signal to the process itself (default SIGTERM). */
  kill(signal?: NodeJS.Signals): boolean
  /** SIGTERM (or `signal`), then await exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>
}

export interface L4lbProcess extends LoggedProcess {
  /** Port of the first `"msg":"listening"` line (of `frontend`, if given). */
  listening(frontend?: string, opts?: number | WaitOptions): Promise<number>
  /** Port of the `"msg":"admin listening"` line. */
  adminPort(opts?: number | WaitOptions): Promise<number>
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
}

const live = new Set<ChildProcess>()
let exitHookInstalled = false
function track(proc: ChildProcess): void {
  live.add(proc)
  proc.once('exit', () => live.delete(proc))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    // last resort if a test process exits without running its teardowns
    process.on('exit', () => {
      for (const p of live) p.kill('SIGKILL')
    })
  }
}

function describeCommand(command: string, args: readonly string[]): string {
  const text = [path.basename(command), ...args].join(' ').replace(/\s+/g, ' ')
  return text.length > 100 ? text.slice(0, 97) + '...' : text
}

function tail(text: string, n: number): string {
  const lines = text.trimEnd().split('\n')
  return lines.slice(-n).join('\n')
}

function describePred(pred: (line: LogLine) => boolean): string {
  const src = pred.toString().replace(/\s+/g, ' ')
  return src.length > 160 ? src.slice(0, 157) + '...' : src
}

function matchesFields(line: LogLine, fields: Record<string, unknown>): boolean {
  return Object.entries(fields).every(([k, v]) => line[k] === v)
}

/**
 * Spawns `command args` whose stdout is JSON lines (pino). Killed with
 * SIGKILL in `t.teardown` if still running. `runL4lb` is this for bin/l4lb.
 */
export function spawnLogged(t: TestLike, command: string, args: readonly string[], opts: SpawnOptions = {}): LoggedProcess {
  const proc = spawn(command, [...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  track(proc)
  const label = describeCommand(command, args)
  const lines: LogLine[] = []
  let stdout = ''
  let stderr = ''
  let partial = ''
  let exit: ExitInfo | null = null
  let spawnError: Error | null = null
  interface Waiter {
    pred: (line: LogLine) => boolean
    since: number
    what: string
    timeoutMs: number
    resolve: (line: LogLine) => void
    reject: (err: Error) => void
    timer: NodeJS.Timeout
  }
  const waiters = new Set<Waiter>()

  const context = (): string =>
    `\n--- last stdout lines of ${label}:\n${tail(stdout, 15) || '(none)'}` +
    `\n--- stderr:\n${tail(stderr, 30) || '(none)'}`

  const addLine = (text: string): void => {
    if (text.trim() === '') return
    let line: LogLine
    try {
      const parsed: unknown = JSON.parse(text)
      line = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as LogLine) : { raw: text }
    } catch {
      line = { raw: text }
    }
    const index = lines.push(line) - 1
    for (const w of waiters) {
      if (index >= w.since && w.pred(line)) {
        waiters.delete(w)
        clearTimeout(w.timer)
        w.resolve(line)
      }
    }
  }

  proc.stdout!.setEncoding('utf8')
  proc.stdout!.on('data', (chunk: string) => {
    stdout += chunk
    partial += chunk
    let nl: number
    while ((nl = partial.indexOf('\n')) >= 0) {
      const text = partial.slice(0, nl)
      partial = partial.slice(nl + 1)
      addLine(text)
    }
  })
  proc.stderr!.setEncoding('utf8')
  proc.stderr!.on('data', (chunk: string) => {
    stderr += chunk
  })
  proc.on('error', err => {
    spawnError = err
  })

  const exited = new Promise<ExitInfo>(resolve => {
    // 'close': exited and stdout/stderr fully read, so no line can come later
    proc.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      if (partial !== '') addLine(partial)
      partial = ''
      exit = { code, signal }
      const how = spawnError ? `failed to start (${spawnError.message})` : `exited (code ${code}, signal ${signal})`
      for (const w of waiters) {
        clearTimeout(w.timer)
        w.reject(new Error(`${label} ${how} before logging ${w.what}${context()}`))
      }
      waiters.clear()
      resolve(exit)
    })
  })

  t.teardown(async () => {
    if (exit === null) {
      proc.kill('SIGKILL')
      await withTimeout(exited, DEFAULT_WAIT_MS, `${label} to exit after SIGKILL`)
    }
  })

  const waitFor = (pred: (line: LogLine) => boolean, o: number | WaitOptions = {}): Promise<LogLine> => {
    const w = typeof o === 'number' ? { timeoutMs: o } : o
    const since = w.since ?? 0
    const timeoutMs = w.timeoutMs ?? 10_000
    const what = w.what ?? `a line matching ${describePred(pred)}`
    for (let i = since; i < lines.length; i++) {
      const line = lines[i]!
      if (pred(line)) return Promise.resolve(line)
    }
    if (exit !== null) {
      const e: ExitInfo = exit
      return Promise.reject(new Error(`${label} already exited (code ${e.code}, signal ${e.signal}) without logging ${what}${context()}`))
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        since,
        what,
        timeoutMs,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.delete(waiter)
          reject(new Error(`timed out after ${timeoutMs}ms waiting for ${label} to log ${what}${context()}`))
        }, timeoutMs),
      }
      waiters.add(waiter)
    })
  }

  return {
    proc,
    pid: proc.pid ?? -1,
    lines,
    get stdout() {
      return stdout
    },
    get stderr() {
      return stderr
    },
    exited,
    get exit() {
      return exit
    },
    waitFor,
    waitForMsg(msg, fields = {}, o = {}) {
      const w = typeof o === 'number' ? { timeoutMs: o } : o
      const what = w.what ?? `{"msg":${JSON.stringify(msg)}${Object.keys(fields).length ? ', ' + JSON.stringify(fields).slice(1, -1) : ''}}`
      return waitFor(l => l.msg === msg && matchesFields(l, fields), { ...w, what })
    },
    mark() {
      return lines.length
    },
    kill(signal = 'SIGTERM') {
      return proc.kill(signal)
    },
    async stop(signal = 'SIGTERM', timeoutMs = 35_000) {
      if (exit === null) proc.kill(signal)
      return withTimeout(exited, timeoutMs, `${label} to exit after ${signal}`)
    },
  }
}

/**
 * Runs `node bin/l4lb ...args` from the repo root, parsing its stdout pino
 * lines. Killed (SIGKILL) in `t.teardown` if still running.
 */
export function runL4lb(t: TestLike, args: readonly string[], opts: SpawnOptions = {}): L4lbProcess {
  const p = spawnLogged(t, process.execPath, [L4LB_BIN, ...args], opts)
  const portOf = (line: LogLine): number => {
    const port = Number(line.port)
    if (!Number.isInteger(port) || port <= 0) throw new Error(`log line has no valid port: ${JSON.stringify(line)}`)
    return port
  }
  return Object.assign(p, {
    async listening(frontend?: string, o: number | WaitOptions = {}): Promise<number> {
      const fields = frontend === undefined ? {} : { frontend }
      return portOf(await p.waitForMsg('listening', fields, o))
    },
    async adminPort(o: number | WaitOptions = {}): Promise<number> {
      return portOf(await p.waitForMsg('admin listening', {}, o))
    },
  })
}

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `command args` to completion (killed with SIGKILL after `timeoutMs`). */
export function runProcess(
  command: string,
  args: readonly string[],
  opts: SpawnOptions & { timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const label = describeCommand(command, args)
  return new Promise((resolve, reject) => {
    const proc = spawn(command, [...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    track(proc)
    let stdout = ''
    let stderr = ''
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    proc.stdin.on('error', () => undefined) // the command may exit without reading stdin
    proc.stdin.end(opts.input)
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`timed out after ${timeoutMs}ms waiting for ${label} to finish\n--- stdout:\n${tail(stdout, 15)}\n--- stderr:\n${tail(stderr, 30)}`))
    }, timeoutMs)
    proc.on('error', err => {
      clearTimeout(timer)
      reject(new Error(`${label} failed to start: ${err.message}`))
    })
    proc.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Runs `node bin/l4lb ...args` to completion (for `check`, `explain`, `--help`). */
export function runCli(
  args: readonly string[],
  opts: SpawnOptions & { timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return runProcess(process.execPath, [L4LB_BIN, ...args], opts)
}

// ---------------------------------------------------------------- tools

/** Absolute path of an executable found in PATH (plus the sbin dirs), or null. */
export function findTool(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)
  for (const extra of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(extra)) dirs.push(extra)
  for (const dir of dirs) {
    const file = path.join(dir, name)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      if (fs.statSync(file).isFile()) return file
    } catch {
      // not here
    }
  }
  return null
}

/**
 * True if system binary `name` exists. If it does not: under CI=true the
 * test fails (CI must install it: see .ci/run); elsewhere the test records a
 * skip and a loud note goes to stderr. Callers return when it is false.
 */
export function requireTool(t: AssertingTest, name: string): boolean {
  if (findTool(name) !== null) return true
  const reason = `required tool "${name}" is not installed`
  if (process.env.CI === 'true') {
    t.fail(`${reason} (CI=true: .ci/run must install it)`)
  } else {
    process.stderr.write(`\n*** SKIPPING: ${reason}; install it to run this test ***\n\n`)
    t.pass(reason, { skip: reason })
  }
  return false
}
