/// <reference lib="dom" />
/**
 * The status page at GET / of the admin listener (SPEC §5): self-contained
 * HTML (no other hosts), readable without the token, rendered by headless
 * Chromium (Debian's `chromium`, installed by .ci/run) with JavaScript off;
 * it shows every backend of the running config and, refreshing itself,
 * shows a backend disabled through the API.
 *
 * L4LB_SCREENSHOT=1 also writes docs/status-page.png (used by the README).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import {
  REPO_ROOT,
  adminRequest,
  connectFrom,
  findTool,
  readAll,
  readLine,
  refusingAddress,
  requireTool,
  startNamedBackend,
  withTimeout,
} from '../helpers'
import { TOKEN, entries, setMode, startLb } from './util'

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

interface Shown {
  frontend: string
  backend: string
  address: string
  state: string
}

/** The backend rows as a reader sees them: each section's title, then name, address and state cells. */
function shownBackends(page: Page): Promise<Shown[]> {
  return page.evaluate(() => {
    const out: { frontend: string; backend: string; address: string; state: string }[] = []
    for (const section of Array.from(document.querySelectorAll('section'))) {
      const h2 = section.querySelector('h2')
      const frontend = (h2?.firstChild?.textContent ?? '').trim()
      for (const tr of Array.from(section.querySelectorAll('tbody tr'))) {
        const cells = Array.from(tr.querySelectorAll('td')).map(td => (td.textContent ?? '').trim())
        out.push({ frontend, backend: (cells[0] ?? '').split(/\s+/)[0]!, address: cells[1] ?? '', state: cells[2] ?? '' })
      }
    }
    return out
  })
}

/** One connection through l4lb from `from` that sends `size` bytes and reads them echoed. */
async function visit(port: number, from: string, size: number): Promise<void> {
  const s = await connectFrom(port, from)
  try {
    await readLine(s)
    s.end(Buffer.alloc(size, 0x78))
    await readAll(s)
  } finally {
    s.destroy()
  }
}

t.test('GET / is self-contained HTML, readable without the token', async t => {
  const backends = await Promise.all(['a', 'b'].map(n => startNamedBackend(t, n)))
  const { admin } = await startLb(t, {
    admin: { listen: '127.0.0.1:0', token: TOKEN },
    frontends: [{ name: 'fe', listen: '127.0.0.1:0', backends: entries(backends) }],
  })
  const r = await adminRequest(admin, 'GET', '/')
  t.equal(r.status, 200, 'GET / without the token: 200')
  t.match(String(r.headers['content-type']), /^text\/html/, 'HTML')
  t.match(r.text, /^<!doctype html>/i, 'a full document')
  for (const b of backends) t.match(r.text, b.name, `names backend ${b.name}`)
  t.notMatch(r.text, /https?:\/\//i, 'no http:// or https:// URL anywhere')
  t.notMatch(r.text, /\b(?:src|href|action|poster|data)\s*=\s*["']?\s*\/\//i, 'no protocol-relative //host URL in an attribute')
  t.notMatch(r.text, /url\(\s*["']?\s*(?:[a-z]+:)?\/\//i, 'no remote url() in CSS')
  t.notMatch(r.text, /@import/i, 'no CSS @import')
  t.notMatch(r.text, /<script\b[^>]*\bsrc=/i, 'no external script')
})

t.test('headless Chromium shows every backend and, after a disable, the new state', async t => {
  if (!requireTool(t, 'chromium')) return
  const exe = findTool('chromium')!

  const [a, b, c] = await Promise.all(['alpha', 'bravo', 'charlie'].map(n => startNamedBackend(t, n)))
  const dead = await refusingAddress()
  const { lb, port, admin } = await startLb(
    t,
    {
      admin: { listen: '127.0.0.1:0', token: TOKEN },
      shutdown_grace: '1s',
      frontends: [
        { name: 'redis', listen: '127.0.0.1:0', backends: entries([a!, b!]) },
        {
          name: 'postgres',
          listen: '127.0.0.1:0',
          health_check: { interval: '200ms', timeout: '100ms', rise: 2, fall: 2 },
          backends: [...entries([c!]), { name: 'delta', address: dead }],
        },
      ],
    },
    'redis',
  )
  const port2 = await lb.listening('postgres')
  await lb.waitForMsg('backend down', { frontend: 'postgres', backend: 'delta' })
  // Some traffic, so the counters are not all zero.
  for (let i = 1; i <= 12; i++) await visit(i % 3 === 0 ? port2 : port, `127.0.3.${i}`, 1000 * i)
  for (let i = 1; i <= 4; i++) await visit(port, `127.0.3.${i}`, 50_000)

  const browser: Browser = await withTimeout(
    chromium.launch({ executablePath: exe, args: CHROMIUM_ARGS }),
    30_000,
    'chromium to start',
  )
  t.teardown(() => browser.close())
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1200, height: 800 } })
  const page = await context.newPage()
  const origin = `http://127.0.0.1:${admin}`
  const requested: string[] = []
  let navigations = 0
  page.on('request', req => {
    requested.push(req.url())
    if (req.isNavigationRequest()) navigations++
  })

  const res = await page.goto(`${origin}/`, { waitUntil: 'load', timeout: 15_000 })
  t.equal(res?.status(), 200, 'Chromium loaded the page')
  const expected: Shown[] = [
    { frontend: 'redis', backend: 'alpha', address: a!.address, state: 'up' },
    { frontend: 'redis', backend: 'bravo', address: b!.address, state: 'up' },
    { frontend: 'postgres', backend: 'charlie', address: c!.address, state: 'up' },
    { frontend: 'postgres', backend: 'delta', address: dead, state: 'down' },
  ]
  t.same(await shownBackends(page), expected, 'every backend of the running config, with its address and state')
  t.match(await page.title(), /l4lb/, 'titled l4lb')

  // Disable bravo through the API; the page refreshes itself (no script: a meta refresh) and shows it.
  t.equal((await setMode(admin, 'redis', 'bravo', 'disable')).status, 200, 'disabled redis/bravo')
  t.equal((await setMode(admin, 'postgres', 'charlie', 'drain')).status, 200, 'drained postgres/charlie')
  // Wait for a load whose request went out after the API calls answered (an earlier refresh may be in flight).
  const before = navigations
  for (let i = 0; i < 5 && navigations === before; i++) await page.waitForEvent('load', { timeout: 15_000 })
  if (navigations === before) await page.waitForEvent('load', { timeout: 15_000 })
  t.ok(navigations > before, `the page reloaded itself (${navigations - before} refresh(es) since the API calls)`)
  t.same(
    await shownBackends(page),
    expected.map(e => (e.backend === 'bravo' ? { ...e, state: 'disabled' } : e.backend === 'charlie' ? { ...e, state: 'draining' } : e)),
    'after its refresh the page shows bravo disabled and charlie draining',
  )
  t.same(
    requested.filter(u => !u.startsWith(`${origin}/`)),
    [],
    `the page made no request to another host (${requested.length} requests)`,
  )

  if (process.env.L4LB_SCREENSHOT === '1') {
    const file = path.join(REPO_ROOT, 'docs', 'status-page.png')
    fs.mkdirSync(path.dirname(file), { recursive: true })
    await page.setViewportSize({ width: 1100, height: 480 })
    await page.screenshot({ path: file, fullPage: true })
    t.comment(`screenshot: ${file}`)
  }
})
