/**
 * Shared pieces of the operating tests (not a test file itself): starting
 * l4lb with an admin listener, reading /status, and a frontend config
 * builder. Everything is on loopback and port 0.
 */
import {
  adminRequest,
  runL4lb,
  writeConfig,
  type Backend,
  type HttpResult,
  type L4lbProcess,
  type TestLike,
} from '../helpers'

export const TOKEN = 's3cret-token'

export interface BackendStatus {
  name: string
  address: string
  state: string
  health?: string
  active: number
  total: number
  [field: string]: unknown
}

export interface FrontendStatus {
  name: string
  listen: string[]
  persistence: { size: number; [field: string]: unknown }
  backends: BackendStatus[]
  [field: string]: unknown
}

export interface Status {
  frontends: FrontendStatus[]
  [field: string]: unknown
}

export interface Entry {
  key: string
  backend: string
  expires_at: string | null
  [field: string]: unknown
}

/** `{name, address}` of each helper backend, for a config's `backends`. */
export function entries(backends: readonly Backend[]): { name: string; address: string }[] {
  return backends.map(b => ({ name: b.name, address: b.address }))
}

/** A config with an admin listener on 127.0.0.1:0 (token TOKEN) and one frontend `fe` on 127.0.0.1:0. */
export function adminConfig(
  backends: readonly Record<string, unknown>[],
  fe: Record<string, unknown> = {},
  top: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    admin: { listen: '127.0.0.1:0', token: TOKEN },
    shutdown_grace: '1s',
    ...top,
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], ...fe, backends }],
  }
}

export interface Lb {
  lb: L4lbProcess
  /** Port of the first frontend's first listener. */
  port: number
  admin: number
  file: string
}

/** Writes `config`, runs `l4lb run -c FILE`, waits for its `listening` and `admin listening` lines. */
export async function startLb(t: TestLike, config: unknown, frontend?: string): Promise<Lb> {
  const file = writeConfig(t, config)
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening(frontend)
  const admin = await lb.adminPort()
  return { lb, port, admin, file }
}

/** A successful (200) admin call's JSON body; throws with status and body otherwise. */
export async function adminJson<T>(admin: number, method: string, path: string, token?: string): Promise<T> {
  const r = await adminRequest(admin, method, path, token === undefined ? {} : { token })
  if (r.status !== 200) throw new Error(`${method} ${path} answered ${r.status}: ${r.text}`)
  return r.json() as T
}

export function getStatus(admin: number): Promise<Status> {
  return adminJson<Status>(admin, 'GET', '/status')
}

/** The /status record of one backend (throws if absent). */
export async function backendStatus(admin: number, frontend: string, backend: string): Promise<BackendStatus> {
  const s = await getStatus(admin)
  const b = s.frontends.find(f => f.name === frontend)?.backends.find(x => x.name === backend)
  if (b === undefined) throw new Error(`/status has no backend ${frontend}/${backend}: ${JSON.stringify(s)}`)
  return b
}

/** GET /persistence/:fe, as a key → backend map. */
export async function table(admin: number, frontend = 'fe'): Promise<Map<string, string>> {
  const body = await adminJson<{ entries: Entry[] }>(admin, 'GET', `/persistence/${frontend}`)
  return new Map(body.entries.map(e => [e.key, e.backend]))
}

/** POST /backends/:fe/:be/:action, with TOKEN unless `token` says otherwise (null: none); returns the raw answer. */
export function setMode(admin: number, frontend: string, backend: string, action: string, token: string | null = TOKEN): Promise<HttpResult> {
  return adminRequest(admin, 'POST', `/backends/${frontend}/${backend}/${action}`, token === null ? {} : { token })
}

/** Client addresses 127.0.<net>.<from>..127.0.<net>.<from+n-1>. */
export function ips(net: number, from: number, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `127.0.${net}.${from + i}`)
}

/** The milliseconds between `since` (epoch ms) and a pino line's `time` (ISO string or epoch ms). */
export function msSince(since: number, line: Readonly<Record<string, unknown>>): number {
  const t = typeof line.time === 'number' ? line.time : Date.parse(String(line.time))
  if (!Number.isFinite(t)) throw new Error(`log line has no usable time: ${JSON.stringify(line)}`)
  return t - since
}
