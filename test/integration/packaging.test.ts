/**
 * What `npm pack` ships: the built code, the bin, sample configs and the
 * package metadata, nothing else (no sources, tests, CI files). And the
 * tarball installs (offline, from the npm cache) into a working `l4lb`.
 *
 * `--ignore-scripts` everywhere: `prepare` would rebuild dist/ under the
 * feet of the integration tests running in parallel.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import { REPO_ROOT, runProcess, tmpDir } from '../helpers'

const QUIET = { npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }

interface PackResult {
  name: string
  version: string
  filename: string
  files: { path: string }[]
}

t.test('npm pack ships only dist/, bin/, config/ and the package metadata', async t => {
  const r = await runProcess('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { env: QUIET, timeoutMs: 60_000 })
  t.equal(r.code, 0, 'npm pack --dry-run exits 0', { stderr: r.stderr.slice(-1000) })
  const [pack] = JSON.parse(r.stdout) as PackResult[]
  const files = pack!.files.map(f => f.path)
  const allowed = (f: string): boolean =>
    /^(dist|bin|config)\//.test(f) || ['package.json', 'README.md', 'LICENSE'].includes(f)
  t.same(files.filter(f => !allowed(f)), [], 'no file outside dist/, bin/, config/, package.json, README.md, LICENSE')
  for (const needed of ['package.json', 'bin/l4lb', 'dist/cli/main.js', 'dist/process/single.js']) {
    t.ok(files.includes(needed), `ships ${needed}`)
  }
  t.notOk(files.some(f => f.endsWith('.ts')), 'no TypeScript sources')
  t.notOk(files.some(f => /(^|\/)test\//.test(f)), 'no tests')
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  t.equal(pack!.version, pkg.version, 'the version of package.json')
})

t.test('the tarball installs into a working l4lb', async t => {
  const dir = tmpDir(t)
  const packed = await runProcess('npm', ['pack', '--pack-destination', dir, '--ignore-scripts', '--json'], {
    env: QUIET,
    timeoutMs: 60_000,
  })
  t.equal(packed.code, 0, 'npm pack exits 0', { stderr: packed.stderr.slice(-1000) })
  const tgz = path.join(dir, (JSON.parse(packed.stdout) as PackResult[])[0]!.filename)
  const prefix = path.join(dir, 'prefix')
  // --prefer-offline: the cache after `npm ci` holds tarballs but not the registry metadata a fresh install resolves with
  const installed = await runProcess('npm', ['install', '-g', '--prefix', prefix, tgz, '--prefer-offline', '--no-audit', '--no-fund'], {
    env: QUIET,
    timeoutMs: 120_000,
  })
  if (installed.code !== 0) {
    const reason = `install of the tarball failed (no registry and no cache?): ${installed.stderr.trim().split('\n').slice(-3).join(' | ')}`
    if (process.env.CI === 'true') {
      t.fail(reason)
    } else {
      process.stderr.write(`\n*** SKIPPING: ${reason} ***\n\n`)
      t.pass(reason, { skip: reason })
    }
    return
  }
  const bin = path.join(prefix, 'bin', 'l4lb')
  t.ok(fs.existsSync(bin), `${bin} exists`)
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  const v = await runProcess(bin, ['--version'], { cwd: dir, timeoutMs: 30_000 })
  t.equal(v.code, 0, 'the installed l4lb --version exits 0')
  t.equal(v.stdout.trim(), pkg.version, `and prints ${pkg.version}`)
  const sample = path.join(prefix, 'lib', 'node_modules', 'l4lb', 'config', 'l4lb.yaml')
  const check = await runProcess(bin, ['check', '-c', sample], { cwd: dir, timeoutMs: 30_000 })
  t.equal(check.stdout.trim(), 'config ok', 'the installed l4lb checks its shipped sample config')
})
