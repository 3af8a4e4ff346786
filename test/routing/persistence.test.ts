/**
 * The persistence table (SPEC §1 step 4) on an injected clock: idle ttl,
 * never expiring while a connection of the key is open (the ttl counts from
 * the last open or close), LRU eviction at max_entries, retain() after a
 * reload, and what entries() reports.
 */
import t from 'tap';
import { LocalTable } from '../../src/routing/persistence';

const TTL = 30 * 60_000;
const WALL0 = 1_700_000_000_000; // the wall clock, for expiresAt

/** A monotonic and a wall clock that move together, by hand. */
function clocks() {
  // Not 0: lru-cache treats a start time of 0 as "no ttl", and performance.now() is never 0.
  let mono = 1_000;
  let wall = WALL0;
  return {
    mono: { now: () => mono },
    wall: { now: () => wall },
    advance(ms: number) {
      mono += ms;
      wall += ms;
    },
  };
}

function setup(ttl = TTL, max = 1000) {
  const c = clocks();
  return { table: new LocalTable(ttl, max, c.mono, c.wall), advance: c.advance };
}

t.test('idle entries expire after ttl', async (t) => {
  const { table, advance } = setup();
  table.assign('ip:10.0.0.1', 'a');
  t.equal(table.lookup('ip:10.0.0.1'), 'a');
  t.same(table.get('ip:10.0.0.1'), { key: 'ip:10.0.0.1', backend: 'a', expiresAt: WALL0 + TTL, connections: 0 });
  advance(TTL - 1);
  t.equal(table.lookup('ip:10.0.0.1'), 'a', 'alive just before ttl');
  t.equal(table.get('ip:10.0.0.1')?.expiresAt, WALL0 + TTL, 'a lookup does not extend the ttl');
  advance(2);
  t.equal(table.lookup('ip:10.0.0.1'), undefined, 'gone after ttl');
  t.equal(table.get('ip:10.0.0.1'), undefined);
  t.same([...table.entries()], []);
  t.equal(table.size, 0, 'an expired entry is not counted');
});

t.test('size does not count expired entries nobody has looked up', async (t) => {
  const { table, advance } = setup(1000);
  table.assign('k1', 'a');
  table.assign('k2', 'a');
  advance(500);
  table.assign('k3', 'b');
  t.equal(table.size, 3);
  advance(501);
  t.equal(table.size, 1, 'k1 and k2 expired');
  t.same([...table.entries()].map((e) => e.key), ['k3']);
  t.equal(table.clear(), 1, 'clear() reports the live entries it dropped');
  t.equal(table.size, 0);
});

t.test('rewriting an entry restarts its ttl', async (t) => {
  const { table, advance } = setup();
  table.assign('k', 'a');
  advance(TTL - 10);
  table.assign('k', 'b'); // failover rewrote it
  advance(100);
  t.equal(table.lookup('k'), 'b');
  t.equal(table.get('k')?.expiresAt, WALL0 + TTL - 10 + TTL);
});

t.test('an entry never expires while its key has a connection open', async (t) => {
  const { table, advance } = setup();
  table.assign('k', 'a');
  table.open('k');
  advance(10 * TTL);
  t.equal(table.lookup('k'), 'a', 'still there long past ttl');
  t.same(table.get('k'), { key: 'k', backend: 'a', expiresAt: null, connections: 1 });

  table.open('k'); // a second connection of the same client
  advance(TTL);
  table.close('k');
  t.same(table.get('k'), { key: 'k', backend: 'a', expiresAt: null, connections: 1 }, 'one still open: still pinned');
  advance(10 * TTL);
  t.equal(table.lookup('k'), 'a');

  const closedAt = WALL0 + 21 * TTL;
  table.close('k');
  t.same(table.get('k'), { key: 'k', backend: 'a', expiresAt: closedAt + TTL, connections: 0 }, 'ttl counts from the last close');
  advance(TTL - 1);
  t.equal(table.lookup('k'), 'a', 'alive until ttl after the close');
  advance(2);
  t.equal(table.lookup('k'), undefined, 'expired ttl after the close');
});

t.test('the ttl counts from the last open, too', async (t) => {
  const { table, advance } = setup();
  table.assign('k', 'a');
  advance(TTL / 2);
  table.open('k');
  table.close('k'); // a short connection half-way through the ttl
  advance(TTL / 2 + 1);
  t.equal(table.lookup('k'), 'a', 'past the ttl counted from assign, but not from the last connection');
  advance(TTL / 2);
  t.equal(table.lookup('k'), undefined);
});

t.test('a pinned entry can be rewritten (failover) and stays pinned', async (t) => {
  const { table, advance } = setup();
  table.assign('k', 'a');
  table.open('k');
  table.assign('k', 'b');
  t.same(table.get('k'), { key: 'k', backend: 'b', expiresAt: null, connections: 1 });
  advance(2 * TTL);
  table.close('k');
  t.equal(table.lookup('k'), 'b');
});

t.test('open/close without an entry change nothing', async (t) => {
  const { table } = setup();
  table.open('nobody');
  table.close('nobody');
  t.equal(table.lookup('nobody'), undefined);
  t.equal(table.size, 0);
  table.assign('k', 'a');
  table.close('k'); // not open: no effect
  t.same(table.get('k')?.connections, 0);
  t.equal(table.size, 1);
});

t.test('max_entries evicts the least recently used and counts it', async (t) => {
  const { table } = setup(TTL, 3);
  table.assign('k1', 'a');
  table.assign('k2', 'a');
  table.assign('k3', 'a');
  t.equal(table.lookup('k1'), 'a'); // k1 is now more recent than k2
  table.assign('k4', 'b');
  t.equal(table.size, 3);
  t.equal(table.lookup('k2'), undefined, 'k2 (least recently used) went');
  t.same(['k1', 'k3', 'k4'].map((k) => table.lookup(k)), ['a', 'a', 'b']);
  t.equal(table.evictions, 1);

  table.assign('k4', 'c'); // rewrite: not an eviction
  table.delete('k3'); // delete: not an eviction
  t.equal(table.evictions, 1);

  for (let i = 0; i < 10; i++) table.assign(`n${i}`, 'a');
  t.equal(table.evictions, 1 + 9, 'one eviction per entry pushed out');
  t.equal(table.size, 3);
});

t.test('an open key is never evicted', async (t) => {
  const { table } = setup(TTL, 2);
  table.assign('busy', 'a');
  table.open('busy');
  for (let i = 0; i < 20; i++) table.assign(`k${i}`, 'b');
  t.equal(table.lookup('busy'), 'a');
  t.equal(table.get('busy')?.connections, 1);
});

t.test('retain() drops the entries of removed backends, open or not', async (t) => {
  const { table } = setup();
  table.assign('k1', 'a');
  table.assign('k2', 'gone');
  table.assign('k3', 'gone');
  table.assign('k4', 'b');
  table.open('k3');
  t.equal(
    table.retain((b) => b !== 'gone'),
    2,
  );
  t.same(
    [...table.entries()].map((e) => [e.key, e.backend]).sort(),
    [
      ['k1', 'a'],
      ['k4', 'b'],
    ],
  );
  t.equal(table.lookup('k3'), undefined, 'the open key of a removed backend is dropped too');
  table.close('k3'); // its connection finishes later: no resurrection
  t.equal(table.lookup('k3'), undefined);
  t.equal(table.size, 2);
});

t.test('entries() reports pinned entries with expiresAt null', async (t) => {
  const { table, advance } = setup();
  table.assign('idle', 'a');
  advance(1000);
  table.assign('busy', 'b');
  table.open('busy');
  table.open('busy');
  const byKey = Object.fromEntries([...table.entries()].map((e) => [e.key, e]));
  t.same(byKey, {
    idle: { key: 'idle', backend: 'a', expiresAt: WALL0 + TTL, connections: 0 },
    busy: { key: 'busy', backend: 'b', expiresAt: null, connections: 2 },
  });
  t.equal(table.size, 2);
});

t.test('delete and clear', async (t) => {
  const { table } = setup();
  table.assign('k1', 'a');
  table.assign('k2', 'a');
  table.open('k2');
  t.equal(table.delete('k2'), true, 'an open key can be deleted');
  t.equal(table.delete('k2'), false);
  t.equal(table.lookup('k2'), undefined);
  table.close('k2');
  t.equal(table.lookup('k2'), undefined, 'closing it later does not bring it back');
  t.equal(table.clear(), 1);
  t.equal(table.size, 0);
});

t.test('a key deleted while a connection is open: the next entry is pinned by every open connection (issue 11)', async (t) => {
  const { table, advance } = setup();
  table.assign('k', 'a');
  table.open('k'); // connection A
  t.equal(table.delete('k'), true, 'DELETE with A open');
  t.equal(table.get('k'), undefined, 'the entry is gone');
  t.equal(table.size, 0);
  table.assign('k', 'b'); // connection B is placed afresh
  table.open('k');
  t.same(table.get('k'), { key: 'k', backend: 'b', expiresAt: null, connections: 2 }, 'A and B both hold the new entry');
  table.close('k'); // A closes
  advance(TTL * 3);
  t.same(table.get('k'), { key: 'k', backend: 'b', expiresAt: null, connections: 1 }, 'B is open: the entry never expires');
  table.close('k'); // B closes: the ttl starts now
  t.same(table.get('k'), { key: 'k', backend: 'b', expiresAt: WALL0 + TTL * 4, connections: 0 });
  advance(TTL + 1);
  t.equal(table.lookup('k'), undefined, 'and expires a ttl after the last close');
  // clear() and retain() keep the counts of open keys likewise
  table.assign('x', 'a');
  table.open('x');
  table.clear();
  table.assign('x', 'c');
  table.open('x');
  table.close('x');
  t.same(table.get('x'), { key: 'x', backend: 'c', expiresAt: null, connections: 1 }, 'after clear(), the still-open connection keeps the new entry pinned');
  t.equal(table.retain((b) => b !== 'c'), 1);
  table.assign('x', 'd');
  t.same(table.get('x'), { key: 'x', backend: 'd', expiresAt: null, connections: 1 }, 'after retain() dropped it, likewise');
});
