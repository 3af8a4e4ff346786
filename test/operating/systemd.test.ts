/**
 * config/l4lb.service passes `systemd-analyze verify` (Debian's `systemd`,
 * installed by .ci/run), with ExecStart pointing at this checkout's
 * bin/l4lb: exit 0 and no complaint naming the unit. A copy with a typo'd
 * key shows the check can fail.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import { L4LB_BIN, REPO_ROOT, findTool, requireTool, runProcess, tmpDir } from '../helpers'

const UNIT = fs.readFileSync(path.join(REPO_ROOT, 'config', 'l4lb.service'), 'utf8')

/** Writes the unit (with `edit` applied) as DIR/l4lb.service and runs `systemd-analyze verify ./l4lb.service` in DIR. */
async function verify(t: tap.Test, edit: (text: string) => string = s => s) {
  const dir = tmpDir(t)
  const text = edit(UNIT.split('/usr/local/bin/l4lb').join(L4LB_BIN))
  fs.writeFileSync(path.join(dir, 'l4lb.service'), text)
  const r = await runProcess(findTool('systemd-analyze')!, ['verify', './l4lb.service'], { cwd: dir, timeoutMs: 60_000 })
  const complaints = r.stderr.split('\n').filter(l => l.includes('l4lb.service'))
  return { ...r, text, complaints }
}

t.test('systemd-analyze verify accepts config/l4lb.service', async t => {
  if (!requireTool(t, 'systemd-analyze')) return
  t.ok(UNIT.includes('/usr/local/bin/l4lb'), 'the unit runs /usr/local/bin/l4lb (replaced here by this checkout)')
  const r = await verify(t)
  t.notOk(r.text.includes('/usr/local/bin/l4lb'), 'every /usr/local/bin/l4lb was replaced')
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim() || 'none'})`)
  t.same(r.complaints, [], 'no complaint about l4lb.service')
  t.match(r.text, /^ExecReload=.*-HUP \$MAINPID$/m, 'reload sends SIGHUP')
  t.match(r.text, /^Restart=on-failure$/m, 'restarts on failure')
  t.match(r.text, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m, 'may bind ports below 1024')
  t.match(r.text, /^NoNewPrivileges=yes$/m, 'no new privileges')
  t.match(r.text, /^ProtectSystem=strict$/m, 'read-only file system')
})

t.test('the check catches a broken unit', async t => {
  if (!requireTool(t, 'systemd-analyze')) return
  const typo = await verify(t, s => s.replace(/^Restart=on-failure$/m, 'Restart=on-failure\nRestartt=always'))
  t.match(typo.complaints.join('\n'), /Restartt/, `an unknown key is reported (${typo.complaints.join(' | ')})`)
  const missing = await verify(t, s => s.split(L4LB_BIN).join('/nonexistent/l4lb'))
  t.not(missing.code, 0, 'a missing executable fails verify')
})
