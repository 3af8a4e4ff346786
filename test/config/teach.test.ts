/**
 * Errors that teach (SPEC §15), the parts built so far: durations that must
 * be positive reject 0s, a backend on port 0 is an error, a bad --log-level
 * exits 1 with one line, `l4lb` alone prints the usage. Verbatim.
 */
import t from 'tap'
import { runCli } from '../helpers'
import { errors } from '../util/config'

const fe = (extra: Record<string, unknown>, backend: Record<string, unknown> = {}) => ({
  frontends: [{ name: 'fe', listen: '127.0.0.1:7000', ...extra, backends: [{ name: 'a', address: '127.0.0.1:7001', ...backend }] }],
})

t.test('durations that must be positive reject 0s', async t => {
  const cases: [Record<string, unknown>, string][] = [
    [{ timeouts: { connect: '0s' } }, 'frontends[0].timeouts.connect'],
    [{ timeouts: { handshake: '0ms' } }, 'frontends[0].timeouts.handshake'],
    [{ health_check: { interval: '0s' } }, 'frontends[0].health_check.interval'],
    [{ health_check: { timeout: '0s' } }, 'frontends[0].health_check.timeout'],
    [{ passive: { fail_timeout: '0s' } }, 'frontends[0].passive.fail_timeout'],
  ]
  for (const [extra, path] of cases) t.same(errors(fe(extra)), [{ path, message: 'must be more than 0' }], path)
  t.same(
    errors({ pools: [{ name: 'p', timeouts: { connect: '0s' }, backends: [{ name: 'a', address: '127.0.0.1:1' }] }], frontends: [{ name: 'f', listen: '127.0.0.1:2', pool: 'p' }] }),
    [{ path: 'pools[0].timeouts.connect', message: 'must be more than 0' }],
    'in a pool too',
  )
})

t.test('a backend on port 0 is an error; a listener on port 0 is not', async t => {
  t.same(errors(fe({}, { address: '127.0.0.1:0' })), [{ path: 'frontends[0].backends[0].address', message: 'port 0 is not a backend port' }])
})

t.test('CLI: a bad --log-level exits 1 with one line; no arguments prints the usage', async t => {
  const bad = await runCli(['run', '--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1', '--log-level', 'verbose'])
  t.equal(bad.code, 1, 'exit 1')
  t.equal(bad.stderr.trim(), "error: option '--log-level <level>' argument 'verbose' is invalid. Allowed choices are fatal, error, warn, info, debug, trace, silent.")
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line, no stack trace')
  const none = await runCli([])
  t.equal(none.code, 1, 'l4lb alone exits 1')
  t.match(none.stderr, /^Usage: l4lb \[options\] \[command\]/, 'and prints the usage')
  t.match(none.stderr, /^\s+run \[options\]/m, 'listing the commands')
})
