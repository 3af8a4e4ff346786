// Self-tests of test/helpers.ts: the parts that need no l4lb.
import * as fs from 'node:fs'
import * as net from 'node:net'
import t from 'tap'
import {
  blackholeAddress,
  CLI_MAIN,
  connectFrom,
  findTool,
  readAll,
  readGreeting,
  readLine,
  request,
  requireTool,
  reservePort,
  runCli,
  spawnLogged,
  startEchoBackend,
  startNamedBackend,
  waitForEvent,
  withTimeout,
  writeConfig,
} from './helpers'

const canBindV6 = async (): Promise<boolean> => {
  const s = net.createServer()
  try {
    s.listen(0, '::1')
    await waitForEvent(s, 'listening', 2_000)
    return true
  } catch {
    return false
  } finally {
    s.close()
  }
}

t.test('named backend greets with its name, then echoes', async t => {
  const b = await startNamedBackend(t, 'alpha')
  t.equal(b.address, `127.0.0.1:${b.port}`)
  const sock = await connectFrom(b.port)
  t.equal(await readGreeting(sock), 'alpha')
  sock.write('ping\n')
  t.equal(await readLine(sock), 'ping')
  sock.end('tail')
  t.equal((await readAll(sock)).toString(), 'tail', 'echo ends after the client ends')
  t.equal(b.connections, 1)
})

t.test('readLine keeps bytes after the line for the next reader', async t => {
  const b = await startNamedBackend(t, 'beta')
  const sock = await connectFrom(b.port)
  sock.write('one\ntwo\n')
  await b.waitForConnections(1)
  t.equal(await readLine(sock), 'beta')
  t.equal(await readLine(sock), 'one')
  t.equal(await readLine(sock), 'two')
  sock.destroy()
})

t.test('request() returns the backend name; clients seen by the backend', async t => {
  const b = await startNamedBackend(t, 'gamma')
  t.equal(await request(b.port), 'gamma')
  t.equal(await request(b.port, '127.0.0.5'), 'gamma')
  t.same(b.clients, ['127.0.0.1', '127.0.0.5'])
  t.equal(b.connections, 2)
})

t.test('connectFrom binds the given loopback source address', async t => {
  const b = await startEchoBackend(t)
  const next = b.nextConnection()
  const sock = await connectFrom(b.port, '127.0.0.5')
  const seen = await next
  t.equal(seen.remoteAddress, '127.0.0.5')
  t.equal(sock.localAddress, '127.0.0.5')
  sock.destroy()
})

t.test('echo backend honours half-close', async t => {
  const b = await startEchoBackend(t)
  const sock = await connectFrom(b.port)
  sock.end(Buffer.from('abc'))
  t.equal((await readAll(sock)).toString(), 'abc')
  await waitForEvent(sock, 'close')
  t.equal(b.connections, 1)
})

t.test('backend on ::1', async t => {
  if (!(await canBindV6())) {
    t.pass('::1 unavailable', { skip: 'this host cannot bind ::1' })
    return
  }
  const b = await startNamedBackend(t, 'six', { host: '::1' })
  t.equal(b.address, `[::1]:${b.port}`)
  t.equal(await request(b.port, undefined, { host: '::1' }), 'six')
})

t.test('stopListening refuses new connections, keeps open ones; close() ends them', async t => {
  const b = await startNamedBackend(t, 'delta')
  const sock = await connectFrom(b.port)
  t.equal(await readGreeting(sock), 'delta')
  b.stopListening()
  await t.rejects(connectFrom(b.port), /ECONNREFUSED/)
  sock.write('still\n')
  t.equal(await readLine(sock), 'still')
  const closed = waitForEvent(sock, 'close')
  await b.close()
  await closed
  t.equal(b.active, 0)
})

t.test('a backend can come back on the same port', async t => {
  const b1 = await startNamedBackend(t, 'eps')
  await b1.close()
  await t.rejects(request(b1.port), /ECONNREFUSED/)
  const b2 = await startNamedBackend(t, 'eps', { port: b1.port })
  t.equal(await request(b2.port), 'eps')
})

t.test('reservePort: nothing listens there', async t => {
  const port = await reservePort()
  t.ok(port > 0)
  await t.rejects(connectFrom(port), /ECONNREFUSED/)
})

t.test('blackholeAddress: a connect neither succeeds nor is refused', async t => {
  const bh = await blackholeAddress(t)
  t.match(bh.address, /^127\.0\.0\.1:\d+$/)
  const sock = net.connect({ port: bh.port, host: bh.host })
  t.teardown(() => sock.destroy())
  sock.setTimeout(1_500)
  const outcome = await Promise.race([
    waitForEvent(sock, 'timeout', 5_000).then(() => 'timeout'),
    waitForEvent(sock, 'connect', 5_000).then(() => 'connected'),
  ]).catch((err: Error) => `error: ${err.message}`)
  t.equal(outcome, 'timeout', 'still connecting after 1.5s')
  await bh.close()
})

t.test('waitForEvent / withTimeout fail with a message instead of hanging', async t => {
  const b = await startEchoBackend(t)
  await t.rejects(waitForEvent(b.server, 'never', 50), /timed out after 50ms waiting for 'never' event/)
  await t.rejects(withTimeout(new Promise(() => undefined), 30, 'godot'), /timed out after 30ms waiting for godot/)
  await t.rejects(b.waitForConnections(1, 30), /backend echo to have 1 connections.*has 0/)
})

t.test('writeConfig writes JSON text (valid YAML) and can rewrite in place', async t => {
  const cfg = { frontends: [{ name: 'fe', listen: '127.0.0.1:0', backends: [] }] }
  const file = writeConfig(t, cfg)
  t.match(file, /l4lb\.yaml$/)
  t.same(JSON.parse(fs.readFileSync(file, 'utf8')), cfg)
  writeConfig(t, 'log: {level: debug}\n', { path: file })
  t.equal(fs.readFileSync(file, 'utf8'), 'log: {level: debug}\n')
  t.match(writeConfig(t, cfg, { ext: 'json' }), /l4lb\.json$/)
})

t.test('spawnLogged parses pino lines and waits for past and future lines', async t => {
  const script = `
    const log = o => process.stdout.write(JSON.stringify(o) + '\\n')
    log({ level: 30, msg: 'listening', frontend: 'fe', address: '127.0.0.1', port: 4242 })
    process.stdout.write('not json\\n')
    setInterval(() => {}, 1000)
    process.on('SIGHUP', () => log({ level: 30, msg: 'reloaded' }))
    process.on('SIGTERM', () => { log({ level: 30, msg: 'bye' }); process.exit(0) })
  `
  const p = spawnLogged(t, process.execPath, ['-e', script])
  const first = await p.waitForMsg('listening', { frontend: 'fe' })
  t.equal(first.port, 4242)
  await p.waitFor(l => l.raw === 'not json')
  const mark = p.mark()
  await t.rejects(p.waitForMsg('listening', {}, { since: mark, timeoutMs: 50 }), /timed out after 50ms.*"msg":"listening"/s)
  const reloaded = p.waitForMsg('reloaded', {}, { since: mark })
  p.kill('SIGHUP')
  t.equal((await reloaded).msg, 'reloaded')
  const never = p.waitForMsg('never', {}, 5_000)
  t.same(await p.stop(), { code: 0, signal: null })
  await t.rejects(never, /exited \(code 0, signal null\) before logging \{"msg":"never"\}.*"msg":"bye"/s)
  await t.rejects(p.waitForMsg('never'), /already exited/)
})

t.test('spawnLogged kills a still-running process at teardown', async t => {
  let proc: ReturnType<typeof spawnLogged> | undefined
  await t.test('inner', async t => {
    proc = spawnLogged(t, process.execPath, ['-e', 'setInterval(() => {}, 1000)'])
    t.equal(proc.exit, null)
  })
  const exit = await withTimeout(proc!.exited, 5_000, 'teardown kill')
  t.same(exit, { code: null, signal: 'SIGKILL' })
})

t.test('findTool / requireTool', async t => {
  t.match(findTool('sh'), /\/sh$/)
  t.equal(findTool('no-such-tool-l4lb-xyz'), null)
  t.equal(requireTool(t, 'sh'), true)
})

t.test('runCli', { skip: fs.existsSync(CLI_MAIN) ? false : `${CLI_MAIN} not built yet` }, async t => {
  const r = await runCli(['--version'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /\d+\.\d+\.\d+/)
})
