/** SIGHUP applies a new log.level; --log-level on the command line wins over the file. */
import t from 'tap'
import { request, runL4lb, startNamedBackend, writeConfig } from '../helpers'

const config = (level: string, address: string) => ({
  log: { level },
  frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], backends: [{ name: 'b1', address }] }],
})

t.test('log.level follows the file on SIGHUP', async t => {
  const b1 = await startNamedBackend(t, 'b1')
  const file = writeConfig(t, config('info', b1.address))
  const lb = runL4lb(t, ['run', '-c', file])
  const port = await lb.listening('fe')

  // info -> warn: "reloaded" is still logged (under the level in force when SIGHUP came) ...
  writeConfig(t, config('warn', b1.address), { path: file })
  let m = lb.mark()
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since: m })
  // ... and from then on a connection writes no "connection closed" line.
  t.equal(await request(port, '127.0.0.31'), 'b1', 'served at warn')
  // warn -> info: "reloaded" is not visible, so connect (bounded) until connections are logged again.
  writeConfig(t, config('info', b1.address), { path: file })
  m = lb.mark()
  lb.kill('SIGHUP')
  let logged = false
  for (let i = 1; i <= 50 && !logged; i++) {
    const client = `127.0.34.${i}`
    t.equal(await request(port, client), 'b1', `served (${client})`)
    logged = await lb
      .waitFor(l => l.msg === 'connection closed' && l.client === client, { since: m, timeoutMs: 200 })
      .then(() => true, () => false)
  }
  t.ok(logged, 'connections are logged again after the reload to info')
  t.notOk(lb.lines.some(l => l.msg === 'connection closed' && l.client === '127.0.0.31'), 'nothing was logged for the connection made at warn')
})

t.test('--log-level wins over the file', async t => {
  const b1 = await startNamedBackend(t, 'b1')
  const file = writeConfig(t, config('warn', b1.address))
  const lb = runL4lb(t, ['run', '-c', file, '--log-level', 'info'])
  const port = await lb.listening('fe')
  const m = lb.mark()
  lb.kill('SIGHUP')
  await lb.waitForMsg('reloaded', {}, { since: m })
  t.equal(await request(port, '127.0.0.33'), 'b1', 'served')
  await lb.waitFor(l => l.msg === 'connection closed' && l.client === '127.0.0.33', { since: m })
  t.pass('still logging at info after a reload of a warn-level file')
})
