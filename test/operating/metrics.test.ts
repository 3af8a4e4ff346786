/**
 * GET /metrics (SPEC §4): strict Prometheus text exposition (0.0.4), and
 * counters that match the traffic the test sent through two frontends:
 * connections, bytes both ways (frontend and backend), refusals by reason,
 * backend up/down, persistence hits and misses.
 */
import * as net from 'node:net'
import t from 'tap'
import { adminRequest, connectFrom, readAll, readLine, refusingAddress, startNamedBackend, withTimeout } from '../helpers'
import { TOKEN, entries, startLb } from './util'

// ------------------------------------------------------------ a strict parser

type Labels = Record<string, string>
interface Sample {
  name: string
  labels: Labels
  value: number
}
interface Family {
  name: string
  type: string
  help: string | null
  samples: Sample[]
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

function parseValue(text: string, where: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN') return NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: value ${JSON.stringify(text)} is not a number`)
  return Number(text)
}

/** `{a="x",b="y"}` starting at text[i] === '{'; returns the labels and the index after '}'. */
function parseLabels(text: string, i: number, where: string): [Labels, number] {
  const labels: Labels = {}
  i++ // '{'
  for (;;) {
    if (text[i] === '}') return [labels, i + 1]
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(text.slice(i))
    if (!m) throw new Error(`${where}: bad label at ${JSON.stringify(text.slice(i))}`)
    const name = m[1]!
    if (!LABEL_NAME.test(name) || name in labels) throw new Error(`${where}: bad or repeated label name ${name}`)
    i += m[0].length
    let value = ''
    for (;;) {
      const c = text[i]
      if (c === undefined) throw new Error(`${where}: unterminated label value`)
      if (c === '"') break
      if (c === '\\') {
        const e = text[i + 1]
        if (e === 'n') value += '\n'
        else if (e === '\\' || e === '"') value += e
        else throw new Error(`${where}: bad escape \\${e}`)
        i += 2
        continue
      }
      if (c === '\n') throw new Error(`${where}: raw newline in a label value`)
      value += c
      i++
    }
    labels[name] = value
    i++ // closing quote
    if (text[i] === ',') i++
    else if (text[i] !== '}') throw new Error(`${where}: expected , or } after label ${name}`)
  }
}

/** Which family a sample name belongs to, given the families declared so far. */
function familyOf(name: string, families: ReadonlyMap<string, Family>): Family | undefined {
  const exact = families.get(name)
  if (exact && exact.type !== 'histogram') return exact
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const f = families.get(name.slice(0, -suffix.length))
    if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return f
  }
  return undefined
}

/**
 * Parses Prometheus text exposition strictly: every sample's family has a
 * TYPE declared before it, samples of a family are contiguous, no series
 * repeats, values are numbers, histograms have `le` buckets ending at +Inf.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>()
  const seenSeries = new Set<string>()
  const closed = new Set<string>() // families whose block has ended
  let current: Family | undefined
  if (!text.endsWith('\n')) throw new Error('exposition does not end with a newline')
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, n) => {
      const where = `line ${n + 1} ${JSON.stringify(line.slice(0, 120))}`
      if (line === '') return
      if (line.startsWith('#')) {
        const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
        if (!m) return // a plain comment
        const [, kind, name, rest] = m as unknown as [string, string, string, string]
        if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`)
        if (closed.has(name)) throw new Error(`${where}: ${name} declared again after its samples`)
        let f = families.get(name)
        if (f === undefined) {
          f = { name, type: 'untyped', help: null, samples: [] }
          families.set(name, f)
        }
        if (kind === 'TYPE') {
          if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`)
          if (f.samples.length > 0 || (f as Family & { typed?: boolean }).typed) throw new Error(`${where}: TYPE of ${name} given twice or after samples`)
          ;(f as Family & { typed?: boolean }).typed = true
          f.type = rest
        } else {
          if (f.help !== null) throw new Error(`${where}: HELP of ${name} given twice`)
          f.help = rest
        }
        return
      }
      const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)
      if (!nm) throw new Error(`${where}: not a sample`)
      const name = nm[0]
      let i = name.length
      let labels: Labels = {}
      if (line[i] === '{') [labels, i] = parseLabels(line, i, where)
      if (line[i] !== ' ') throw new Error(`${where}: expected a space before the value`)
      const parts = line.slice(i + 1).split(' ')
      if (parts.length > 2) throw new Error(`${where}: trailing garbage`)
      const value = parseValue(parts[0]!, where)
      if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`${where}: bad timestamp`)
      const f = familyOf(name, families)
      if (f === undefined || !(f as Family & { typed?: boolean }).typed) throw new Error(`${where}: sample ${name} has no TYPE declared before it`)
      if (current !== f) {
        if (current) closed.add(current.name)
        if (closed.has(f.name)) throw new Error(`${where}: samples of ${f.name} are not contiguous`)
        current = f
      }
      const series = name + JSON.stringify(Object.entries(labels).sort())
      if (seenSeries.has(series)) throw new Error(`${where}: series repeated`)
      seenSeries.add(series)
      if (f.type === 'counter' && !(value >= 0)) throw new Error(`${where}: counter value ${value} is negative or NaN`)
      if (name.endsWith('_bucket') && labels.le === undefined) throw new Error(`${where}: bucket without le`)
      f.samples.push({ name, labels, value })
    })
  for (const f of families.values()) {
    if (f.type !== 'histogram') continue
    const byLabels = new Map<string, Sample[]>()
    for (const s of f.samples.filter(x => x.name.endsWith('_bucket'))) {
      const { le, ...rest } = s.labels
      const k = JSON.stringify(Object.entries(rest).sort())
      byLabels.set(k, [...(byLabels.get(k) ?? []), { ...s, labels: { le: le! } }])
    }
    for (const [k, buckets] of byLabels) {
      const last = buckets[buckets.length - 1]!
      if (last.labels.le !== '+Inf') throw new Error(`histogram ${f.name} ${k}: last bucket is not le="+Inf"`)
      for (let j = 1; j < buckets.length; j++) {
        if (buckets[j]!.value < buckets[j - 1]!.value) throw new Error(`histogram ${f.name} ${k}: buckets not cumulative`)
      }
    }
  }
  return families
}

// ------------------------------------------------------------ the parser itself can fail

t.test('the parser rejects what Prometheus would', async t => {
  const bad: [string, string][] = [
    ['x 1\n', 'a sample without TYPE'],
    ['# TYPE x counter\nx{a="1"} one\n', 'a non-numeric value'],
    ['# TYPE x counter\nx{a="1} 1\n', 'an unterminated label value'],
    ['# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n', 'a repeated series'],
    ['# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx 2\n', 'a family split in two'],
    ['# TYPE x gauge\nx 1', 'a missing final newline'],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n', 'buckets that shrink'],
  ]
  for (const [text, what] of bad) t.throws(() => parseExposition(text), `rejects ${what}`)
  const ok = parseExposition('# HELP x_total An "x"\\n.\n# TYPE x_total counter\nx_total{a="q\\"uote",b="\\\\"} 3\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1.5e0\nh_count 2\n')
  t.same(ok.get('x_total')!.samples, [{ name: 'x_total', labels: { a: 'q"uote', b: '\\' }, value: 3 }], 'parses labels with escapes')
  t.equal(ok.get('h')!.samples.length, 4, 'histogram samples belong to their family')
})

// ------------------------------------------------------------ traffic, then the figures

interface Exchange {
  backend: string
  sent: number
  received: number
}

/** Connect from `from`, read the greeting, send `size` bytes, read them echoed until the backend ends, close. */
async function exchange(port: number, from: string, size: number): Promise<Exchange> {
  const s = await connectFrom(port, from)
  try {
    const backend = await readLine(s)
    const payload = Buffer.alloc(size, 0x61 + (size % 26))
    s.end(payload)
    const echoed = await readAll(s)
    if (!echoed.equals(payload)) throw new Error(`${from}: echo of ${size} bytes came back as ${echoed.length} bytes`)
    await withTimeout(new Promise(resolve => (s.closed ? resolve(null) : s.once('close', resolve))), 5000, 'close')
    return { backend, sent: size, received: Buffer.byteLength(`${backend}\n`) + echoed.length }
  } finally {
    s.destroy()
  }
}

/** A connection the frontend refuses: resolves once l4lb closed it. */
async function refused(port: number, from: string): Promise<void> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from })
  s.on('error', () => undefined) // closed or reset: either way refused
  s.resume()
  await withTimeout(new Promise(resolve => s.once('close', resolve)), 5000, `l4lb to close the denied connection from ${from}`)
}

t.test('/metrics parses strictly and its counters match the traffic sent', async t => {
  const [a1, a2, b1] = await Promise.all(['a1', 'a2', 'b1'].map(n => startNamedBackend(t, n)))
  const dead = await refusingAddress()
  const config = {
    admin: { listen: '127.0.0.1:0', token: TOKEN },
    shutdown_grace: '1s',
    frontends: [
      { name: 'fe1', listen: ['127.0.0.1:0'], deny: ['127.0.0.99/32'], backends: entries([a1!, a2!]) },
      {
        name: 'fe2',
        listen: ['127.0.0.1:0'],
        health_check: { interval: '200ms', timeout: '100ms', rise: 2, fall: 2 },
        backends: [...entries([b1!]), { name: 'b2', address: dead }],
      },
    ],
  }
  const { lb, port: port1, admin } = await startLb(t, config, 'fe1')
  const port2 = await lb.listening('fe2')
  await lb.waitForMsg('backend down', { frontend: 'fe2', backend: 'b2' })

  // fe1: 4 clients × 3 connections, plus 3 denied; fe2: 3 clients × 2 connections.
  const plan: { fe: string; port: number; clients: string[]; times: number }[] = [
    { fe: 'fe1', port: port1, clients: ['127.0.1.1', '127.0.1.2', '127.0.1.3', '127.0.1.4'], times: 3 },
    { fe: 'fe2', port: port2, clients: ['127.0.2.1', '127.0.2.2', '127.0.2.3'], times: 2 },
  ]
  const done: Record<string, Exchange[]> = { fe1: [], fe2: [] }
  let size = 100
  for (const p of plan) {
    for (let k = 0; k < p.times; k++) for (const c of p.clients) done[p.fe]!.push(await exchange(p.port, c, (size += 37)))
  }
  const DENIED = 3
  for (let k = 0; k < DENIED; k++) await refused(port1, '127.0.0.99')
  const relayed = done.fe1!.length + done.fe2!.length
  await lb.waitFor(() => lb.lines.filter(l => l.msg === 'connection closed').length >= relayed, { what: `${relayed} "connection closed" lines` })
  await lb.waitFor(() => lb.lines.filter(l => l.msg === 'connection refused').length >= DENIED, { what: `${DENIED} "connection refused" lines` })

  const r = await adminRequest(admin, 'GET', '/metrics')
  t.equal(r.status, 200, 'GET /metrics: 200')
  t.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/, 'Prometheus text content type')
  let families = new Map<string, Family>()
  t.doesNotThrow(() => (families = parseExposition(r.text)), 'the exposition parses strictly')
  for (const name of families.keys()) t.match(name, /^l4lb_/, `${name} starts with l4lb_`)

  const value = (name: string, labels: Labels): number | undefined => {
    for (const f of families.values()) {
      for (const s of f.samples) {
        if (s.name === name && Object.keys(labels).length === Object.keys(s.labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value
      }
    }
    return undefined
  }
  const sum = (xs: Exchange[], f: (x: Exchange) => number): number => xs.reduce((n, x) => n + f(x), 0)

  for (const p of plan) {
    const fe = { frontend: p.fe }
    const xs = done[p.fe]!
    const denied = p.fe === 'fe1' ? DENIED : 0
    t.equal(value('l4lb_connections_total', fe), xs.length + denied, `${p.fe}: connections_total = ${xs.length} relayed + ${denied} denied`)
    t.equal(value('l4lb_connections_refused_total', { ...fe, reason: 'denied' }), denied, `${p.fe}: refused{reason="denied"} = ${denied}`)
    t.equal(value('l4lb_connections_active', fe), 0, `${p.fe}: no connection open`)
    t.equal(value('l4lb_bytes_in_total', fe), sum(xs, x => x.sent), `${p.fe}: bytes_in_total = the bytes clients sent`)
    t.equal(value('l4lb_bytes_out_total', fe), sum(xs, x => x.received), `${p.fe}: bytes_out_total = the bytes clients received`)
    // Persistence belongs to pools (SPEC §9): a §3 frontend's implicit pool has the frontend's name.
    const pool = { pool: p.fe }
    const misses = value('l4lb_persistence_misses_total', pool)
    const hits = value('l4lb_persistence_hits_total', pool)
    t.equal(misses, p.clients.length, `${p.fe}: one persistence miss per new client`)
    t.equal(hits, p.clients.length * (p.times - 1), `${p.fe}: hits for every later connection`)
    t.equal((hits ?? 0) + (misses ?? 0), xs.length, `${p.fe}: hits + misses = ${xs.length} routed connections`)
    t.equal(value('l4lb_persistence_entries', pool), p.clients.length, `${p.fe}: one entry per client`)
    t.equal(value('l4lb_failovers_total', fe), 0, `${p.fe}: no failover`)
  }
  for (const [fe, be, up] of [['fe1', 'a1', 1], ['fe1', 'a2', 1], ['fe2', 'b1', 1], ['fe2', 'b2', 0]] as const) {
    const labels = { pool: fe, backend: be } // backends belong to pools (SPEC §9)
    t.equal(value('l4lb_backend_up', labels), up, `backend_up{${fe}/${be}} = ${up}`)
    const xs = done[fe]!.filter(x => x.backend === be)
    t.equal(value('l4lb_backend_connections_total', labels), xs.length, `${fe}/${be}: ${xs.length} connections`)
    t.equal(value('l4lb_backend_bytes_in_total', labels), sum(xs, x => x.sent), `${fe}/${be}: bytes in`)
    t.equal(value('l4lb_backend_bytes_out_total', labels), sum(xs, x => x.received), `${fe}/${be}: bytes out`)
  }
  t.ok(new Set(done.fe1!.map(x => x.backend)).size === 2, 'fe1 used both its backends')
  const checks = families.get('l4lb_health_check_duration_seconds')
  t.equal(checks?.type, 'histogram', 'health check durations are a histogram')
  t.ok((value('l4lb_health_check_duration_seconds_count', { pool: 'fe2', backend: 'b2', result: 'fail' }) ?? 0) >= 2, 'failed checks of b2 are observed')
})
