/**
 * Passive health (SPEC §1 step 6): `max_fails` consecutive connect failures
 * mark a backend down (one transition), a success resets the count, and
 * after `fail_timeout` the backend is up again and one more failure marks it
 * down at once. Transitions are awaited as events, never slept for.
 */
import { EventEmitter, once } from 'node:events';
import t from 'tap';
import { BackendRuntime, PassiveHealth } from '../../src/health/state';
import type { BackendConfig } from '../../src/config/schema';

function backend(name = 'b1'): BackendRuntime {
  const config = {
    name,
    address: { host: '127.0.0.1', port: 7001, family: 4, text: '127.0.0.1:7001' },
    weight: 1,
    backup: false,
    max_connections: 0,
  } as BackendConfig;
  return new BackendRuntime(config);
}

interface Transition {
  backend: string;
  to: 'up' | 'down';
  reason: string;
}

/** A PassiveHealth whose transitions are recorded and emitted as 'transition' events. */
function passive(max_fails: number, fail_timeout: number) {
  const events = new EventEmitter();
  const log: Transition[] = [];
  const health = new PassiveHealth({ max_fails, fail_timeout }, (b, to, reason) => {
    const tr = { backend: b.name, to, reason };
    log.push(tr);
    events.emit('transition', tr);
  });
  return { health, log, events };
}

/** The next transition, or a failure naming what was awaited (the timer also keeps the process alive). */
async function nextTransition(events: EventEmitter, ms = 2000): Promise<Transition> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    const [tr] = await once(events, 'transition', { signal: ac.signal });
    return tr as Transition;
  } catch {
    throw new Error(`no transition within ${ms}ms`);
  } finally {
    clearTimeout(timer);
  }
}

t.test('max_fails consecutive failures mark the backend down, once', async (t) => {
  const { health, log } = passive(3, 60_000);
  const b = backend();
  t.teardown(() => b.dispose());
  health.failure(b, 'ECONNREFUSED');
  health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'up', 'two failures: still up');
  t.same(log, []);
  health.failure(b, 'connect timeout');
  t.equal(b.health, 'down');
  t.equal(b.state, 'down');
  t.same(log, [{ backend: 'b1', to: 'down', reason: '3 consecutive connect failures (last: connect timeout)' }]);
  health.failure(b, 'ECONNREFUSED');
  health.failure(b, 'ECONNREFUSED');
  t.equal(log.length, 1, 'more failures while down: no more transitions');
  t.equal(b.connectFailures, 5, 'every failure is counted');
});

t.test('a success resets the count', async (t) => {
  const { health, log } = passive(3, 60_000);
  const b = backend();
  t.teardown(() => b.dispose());
  health.failure(b, 'ECONNREFUSED');
  health.failure(b, 'ECONNREFUSED');
  health.success(b);
  t.equal(b.fails, 0);
  health.failure(b, 'ECONNREFUSED');
  health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'up', 'failures were not consecutive');
  t.same(log, []);
  health.failure(b, 'ECONNRESET');
  t.equal(b.health, 'down', 'the third consecutive one marks it down');
  t.equal(log.length, 1);
});

t.test('max_fails 1: the first failure marks it down', async (t) => {
  const { health, log } = passive(1, 60_000);
  const b = backend();
  t.teardown(() => b.dispose());
  health.failure(b, 'ECONNREFUSED');
  t.same(log, [{ backend: 'b1', to: 'down', reason: '1 consecutive connect failures (last: ECONNREFUSED)' }]);
});

t.test('after fail_timeout the backend is up again; one more failure marks it down at once', async (t) => {
  const { health, log, events } = passive(3, 20);
  const b = backend();
  t.teardown(() => b.dispose());
  for (let i = 0; i < 3; i++) health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'down');

  const up = await nextTransition(events);
  t.same(up, { backend: 'b1', to: 'up', reason: 'fail_timeout 20ms elapsed: retrying with traffic' });
  t.equal(b.health, 'up');

  health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'down', 'down again after a single failure');
  t.same(log.map((x) => x.to), ['down', 'up', 'down']);
  t.equal(log[2]!.reason, '3 consecutive connect failures (last: ECONNREFUSED)');

  const upAgain = await nextTransition(events);
  t.equal(upAgain.to, 'up', 'and up again after another fail_timeout');
  health.success(b); // real traffic got through
  health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'up', 'after a success, one failure is not enough');
  health.failure(b, 'ECONNREFUSED');
  health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'down', 'max_fails consecutive failures again');
  t.same(log.map((x) => x.to), ['down', 'up', 'down', 'up', 'down']);
});

t.test('each backend counts on its own', async (t) => {
  const { health, log } = passive(2, 60_000);
  const a = backend('a');
  const c = backend('c');
  t.teardown(() => (a.dispose(), c.dispose()));
  health.failure(a, 'ECONNREFUSED');
  health.failure(c, 'ECONNREFUSED');
  t.same(log, [], 'one failure each is not two in a row');
  health.failure(c, 'ECONNREFUSED');
  t.same(log.map((x) => [x.backend, x.to]), [['c', 'down']]);
  t.equal(a.health, 'up');
});

t.test('on a mock clock: not up before fail_timeout, and dispose() cancels the revival', async (t) => {
  t.clock.enter();
  const { health, log } = passive(2, 10_000);
  const b = backend();
  health.failure(b, 'ECONNREFUSED');
  health.failure(b, 'ECONNREFUSED');
  t.clock.advance(9_999);
  t.equal(b.health, 'down', '1ms before fail_timeout: still down');
  t.clock.advance(1);
  t.equal(b.health, 'up', 'at fail_timeout: up');
  t.same(log.map((x) => x.to), ['down', 'up']);

  health.failure(b, 'ECONNREFUSED');
  t.equal(b.health, 'down');
  b.dispose();
  t.clock.advance(60_000);
  t.equal(b.health, 'down', 'a disposed backend is not revived');
  t.equal(log.length, 3);
});

t.test('transition() is guarded', async (t) => {
  const b = backend();
  t.equal(b.transition(['down'], 'up'), false, 'from does not hold');
  t.equal(b.transition(['up'], 'up'), false, 'no change');
  t.equal(b.transition(['up'], 'down'), true);
  t.equal(b.health, 'down');
  b.setMode('draining');
  t.equal(b.state, 'draining', 'the admin mode wins over health in state');
});
