/**
 * Shared pieces of the integration tests (not a test file itself): a
 * frontend config builder, starting l4lb on a config and reading its port,
 * `l4lb explain --json`, and reading the `connection closed` records.
 */
import { createHash } from 'node:crypto'
import * as net from 'node:net'
import {
  request,
  runCli,
  runL4lb,
  withTimeout,
  writeConfig,
  type Backend,
  type L4lbProcess,
  type LogLine,
  type TestLike,
} from '../helpers'

export interface BackendEntry {
  name: string
  address: string
  [key: string]: unknown
}

/** `{name, address}` of each helper backend, for a config's `backends`. */
export function entries(backends: readonly Backend[]): BackendEntry[] {
  return backends.map(b => ({ name: b.name, address: b.address }))
}

/** A one-frontend config (`name: fe`, listening on 127.0.0.1:0); `fe` and `top` override. */
export function oneFrontend(
  backends: readonly BackendEntry[],
  fe: Record<string, unknown> = {},
  top: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    shutdown_grace: '2s',
    ...top,
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], ...fe, backends }],
  }
}

export interface Lb {
  lb: L4lbProcess
  port: number
  file: string
}

/** Writes `config`, runs `l4lb run -c FILE`, waits for its first `listening` line. */
export async function startLb(t: TestLike, config: unknown, frontend?: string): Promise<Lb> {
  const file = writeConfig(t, config)
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening(frontend)
  return { lb, port, file }
}

export interface Explained {
  frontend: string
  key: string | null
  key_source: string
  backend: string | null
  [field: string]: unknown
}

/** `l4lb explain -c FILE --client IP --json`, parsed; throws (with stderr) on a non-zero exit. */
export async function explain(file: string, client: string, frontend?: string): Promise<Explained> {
  const args = ['explain', '-c', file, '--client', client, '--json']
  if (frontend !== undefined) args.push('--frontend', frontend)
  const r = await runCli(args)
  if (r.code !== 0) throw new Error(`explain --client ${client} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as Explained
}

/** `connection closed` lines of `client` logged at or after line `since`. */
export function closedLines(lb: L4lbProcess, client: string, since = 0): LogLine[] {
  return lb.lines.slice(since).filter(l => l.msg === 'connection closed' && l.client === client)
}

/** The next `connection closed` line of `client` from line `since` on. */
export function closedLine(lb: L4lbProcess, client: string, since: number, timeoutMs = 10_000): Promise<LogLine> {
  return lb.waitFor(l => l.msg === 'connection closed' && l.client === client, {
    since,
    timeoutMs,
    what: `a "connection closed" line for client ${client}`,
  })
}

/**
 * `request()` from `client`, then its own `connection closed` line (the log
 * line can trail the client's close; a later mark() must not catch it).
 * Only for a client with no other connection closing meanwhile.
 */
export async function requestLogged(lb: L4lbProcess, port: number, client: string): Promise<{ name: string; line: LogLine }> {
  const since = lb.mark()
  const name = await request(port, client)
  return { name, line: await closedLine(lb, client, since) }
}

/**
 * Resolves once backend `name` is up as far as the log says: its last
 * `backend up` / `backend down` line is `up` (or it never had one), else at
 * its next `backend up` line.
 */
export async function waitUntilUp(lb: L4lbProcess, name: string, timeoutMs = 10_000): Promise<void> {
  const since = lb.mark()
  const last = lb.lines.findLast(l => (l.msg === 'backend up' || l.msg === 'backend down') && l.backend === name)
  if (last === undefined || last.msg === 'backend up') return
  await lb.waitForMsg('backend up', { backend: name }, { since, timeoutMs })
}

/** Hex sha256 of the buffers, in order. */
export function sha256(...parts: readonly Buffer[]): string {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

/**
 * Everything a client receives until the connection closes, and how it
 * closed: `ended` (a FIN came) and `error` (e.g. a reset). Never rejects
 * before the deadline.
 */
export async function drainUntilClose(
  socket: net.Socket,
  timeoutMs = 10_000,
): Promise<{ data: Buffer; ended: boolean; error: string | null }> {
  const chunks: Buffer[] = []
  let ended = false
  let error: string | null = null
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('end', () => (ended = true))
  socket.on('error', err => (error = (err as NodeJS.ErrnoException).code ?? err.message))
  if (!socket.closed) {
    // not events.once: it would reject on the 'error' this function reports
    await withTimeout(new Promise(resolve => socket.once('close', resolve)), timeoutMs, 'the connection to close')
  }
  return { data: Buffer.concat(chunks), ended, error }
}

/** Runs `fn` over `items` with at most `limit` at a time; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

/**
 * Lets `ms` of wall time pass. Only for waiting out a persistence ttl, where
 * the passage of time itself is what is under test (no event marks it).
 */
export function elapse(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}
