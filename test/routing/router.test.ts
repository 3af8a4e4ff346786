/**
 * Router.decide / next with a real LocalTable and a fake BackendView (SPEC §1
 * steps 4-6): an eligible entry is used as is; a miss, or an entry on a
 * backend that is down, disabled or removed, is placed again; draining and
 * weight 0 keep their keys but take no new ones; a full backend overflows for
 * one connection; a key on a backup returns to a primary.
 */
import t from 'tap';
import { Router } from '../../src/routing/router';
import { LocalTable } from '../../src/routing/persistence';
import { hashKey } from '../../src/routing/hash';
import { ConsistentHash, type BackendView, type PoolMember } from '../../src/routing/balancer';

interface State {
  down?: string[];
  draining?: string[];
  disabled?: string[];
  full?: string[];
}

/** Same rules as the live view in runtime.ts, over sets of names. */
function fakeView(members: readonly PoolMember[], s: State): BackendView {
  const has = (list: string[] | undefined, i: number) => (list ?? []).includes(members[i]!.name);
  return {
    acceptsNew: (i) => !has(s.down, i) && !has(s.draining, i) && !has(s.disabled, i) && members[i]!.weight > 0,
    keeps: (i) => !has(s.down, i) && !has(s.disabled, i),
    hasRoom: (i) => !has(s.full, i),
    active: () => 0,
  };
}

const MEMBERS: PoolMember[] = [
  { name: 'a', weight: 1, backup: false },
  { name: 'b', weight: 1, backup: false },
  { name: 'c', weight: 1, backup: false },
  { name: 'x', weight: 1, backup: true },
];

const clock = { now: () => 1_000_000 };
const newTable = () => new LocalTable(60_000, 1000, clock, clock);

/** The first key (of ip:10.0.0.N) whose consistent-hash placement with everything up is `name`. */
function keyOn(router: Router, name: string): string {
  const view = fakeView(router.members, {});
  for (let n = 0; n < 10_000; n++) {
    const key = `ip:10.0.${n >> 8}.${n & 255}`;
    const d = router.decide(key, hashKey(key), null, view)!;
    if (router.names[d.backend] === name) return key;
  }
  throw new Error(`no key lands on ${name}`);
}

/** decide() then, like the session after a successful connect, write the entry when asked to. */
function connect(router: Router, table: LocalTable, key: string, view: BackendView) {
  const d = router.decide(key, router.hash(key), table, view);
  if (d && d.write) table.assign(key, router.names[d.backend]!);
  return d && { backend: router.names[d.backend], via: d.via, write: d.write };
}

t.test('miss, then hit on an eligible backend', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const table = newTable();
  const key = keyOn(router, 'b');
  const up = fakeView(MEMBERS, {});
  t.same(connect(router, table, key, up), { backend: 'b', via: 'placed', write: true }, 'first connection: placed');
  t.equal(table.lookup(key), 'b', 'and written');
  t.same(connect(router, table, key, up), { backend: 'b', via: 'table', write: false }, 'second: from the table');
  t.same(router.stats, { hits: 1, misses: 1 });
});

t.test('a table entry wins over the ring', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const table = newTable();
  const key = keyOn(router, 'a');
  table.assign(key, 'c'); // e.g. placed there while a was down, a has recovered since
  t.same(connect(router, table, key, fakeView(MEMBERS, {})), { backend: 'c', via: 'table', write: false }, 'a recovered backend does not take its keys back');
});

t.test('entries on backends that are no longer eligible are placed again', async (t) => {
  const cases: { state: State; entry: string; why: string }[] = [
    { state: { down: ['a'] }, entry: 'a', why: 'down' },
    { state: { disabled: ['a'] }, entry: 'a', why: 'disabled' },
    { state: {}, entry: 'gone', why: 'removed from the config' },
  ];
  for (const { state, entry, why } of cases) {
    const router = new Router(MEMBERS, 'consistent_hash', 1000);
    const table = newTable();
    const key = keyOn(router, 'a');
    table.assign(key, entry);
    const d = connect(router, table, key, fakeView(MEMBERS, state))!;
    t.equal(d.via, 'placed', `${why}: placed`);
    t.equal(d.write, true, `${why}: the entry is rewritten`);
    if (entry === 'a') t.not(d.backend, 'a', `${why}: not on a`);
    else t.equal(d.backend, 'a', `${why}: placed by the ring, as a new key`);
    t.equal(table.lookup(key), d.backend, `${why}: table now says ${d.backend}`);
    t.same(router.stats, { hits: 0, misses: 1 }, `${why}: counted as a miss`);
  }
});

t.test('draining keeps existing keys but takes no new ones', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const table = newTable();
  const old = keyOn(router, 'b');
  table.assign(old, 'b');
  const view = fakeView(MEMBERS, { draining: ['b'] });
  t.same(connect(router, table, old, view), { backend: 'b', via: 'table', write: false }, 'existing key stays');
  let placedOnB = 0;
  for (let n = 0; n < 2000; n++) {
    const d = connect(router, table, `ip:172.16.${n >> 8}.${n & 255}`, view)!;
    if (d.backend === 'b') placedOnB++;
  }
  t.equal(placedOnB, 0, 'no new key goes to a draining backend');
});

t.test('weight 0 is like draining for new keys', async (t) => {
  const members: PoolMember[] = [
    { name: 'a', weight: 1, backup: false },
    { name: 'b', weight: 0, backup: false },
    { name: 'c', weight: 1, backup: false },
  ];
  for (const algorithm of ['consistent_hash', 'round_robin', 'least_conn'] as const) {
    const router = new Router(members, algorithm, 1000);
    const table = newTable();
    const view = fakeView(members, {});
    table.assign('ip:192.0.2.1', 'b');
    t.same(connect(router, table, 'ip:192.0.2.1', view), { backend: 'b', via: 'table', write: false }, `${algorithm}: a key already on b stays`);
    let onB = 0;
    for (let n = 0; n < 1000; n++) if (connect(router, table, `ip:198.18.${n >> 8}.${n & 255}`, view)!.backend === 'b') onB++;
    t.equal(onB, 0, `${algorithm}: no new key on a weight-0 backend`);
  }
});

t.test('a backend at max_connections overflows for this connection only', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const table = newTable();
  const key = keyOn(router, 'a');
  table.assign(key, 'a');
  const d = connect(router, table, key, fakeView(MEMBERS, { full: ['a'] }))!;
  t.equal(d.via, 'overflow');
  t.equal(d.write, false, 'the entry is not rewritten');
  t.not(d.backend, 'a');
  t.equal(table.lookup(key), 'a', 'the entry still says a');
  t.same(router.stats, { hits: 1, misses: 0 }, 'an overflow is still a table hit');
  t.same(connect(router, table, key, fakeView(MEMBERS, {})), { backend: 'a', via: 'table', write: false }, 'back on a once it has room');

  t.test('the overflow target is the next backend clockwise', async (t) => {
    const hash = hashKey(key);
    const next = router.next(key, hash, fakeView(MEMBERS, {}), new Set([0]))!;
    t.equal(router.names[next.backend], d.backend);
  });

  t.test('nowhere to overflow to: null', async (t) => {
    const none = router.decide(key, hashKey(key), table, fakeView(MEMBERS, { full: ['a'], down: ['b', 'c', 'x'] }));
    t.equal(none, null);
  });
});

t.test('a key on a backup returns to a primary once one accepts new keys', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const table = newTable();
  const key = 'ip:203.0.113.9';
  const primariesDown = fakeView(MEMBERS, { down: ['a', 'b', 'c'] });
  t.same(connect(router, table, key, primariesDown), { backend: 'x', via: 'placed', write: true }, 'no primary: the backup');
  t.same(connect(router, table, key, primariesDown), { backend: 'x', via: 'table', write: false }, 'stays on the backup while no primary is eligible');
  t.same(
    connect(router, table, key, fakeView(MEMBERS, { down: ['a', 'b'], draining: ['c'] })),
    { backend: 'x', via: 'table', write: false },
    'a draining primary does not count',
  );
  t.same(connect(router, table, key, fakeView(MEMBERS, { down: ['a', 'b'], full: ['c'] })), { backend: 'x', via: 'table', write: false }, 'nor a full one');
  const back = connect(router, table, key, fakeView(MEMBERS, { down: ['a', 'b'] }))!;
  t.same(back, { backend: 'c', via: 'placed', write: true }, 'c is eligible again: the key moves to it');
  t.equal(table.lookup(key), 'c');
  t.same(connect(router, table, key, fakeView(MEMBERS, {})), { backend: 'c', via: 'table', write: false }, 'and stays on c after a and b recover');
  t.same(router.stats, { hits: 4, misses: 2 });
});

t.test('no persistence (affinity none): placed, nothing to write', async (t) => {
  const router = new Router(MEMBERS, 'round_robin', 1000);
  const view = fakeView(MEMBERS, {});
  const seq = [0, 1, 2, 3].map(() => router.decide(null, router.hash(null), null, view)!);
  t.same(
    seq.map((d) => [router.names[d.backend], d.via, d.write, d.point]),
    [
      ['a', 'placed', false, -1],
      ['b', 'placed', false, -1],
      ['c', 'placed', false, -1],
      ['a', 'placed', false, -1],
    ],
  );
  t.equal(router.hash(null), 0);
  t.same(router.stats, { hits: 0, misses: 0 }, 'no table, no hit or miss');
});

t.test('next(): failover skips what was tried and rewrites the entry', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const key = keyOn(router, 'a');
  const hash = hashKey(key);
  const view = fakeView(MEMBERS, {});
  const first = router.decide(key, hash, null, view)!;
  const tried = new Set([first.backend]);
  const second = router.next(key, hash, view, tried)!;
  t.equal(second.via, 'failover');
  t.equal(second.write, true);
  t.not(second.backend, first.backend);
  tried.add(second.backend);
  const third = router.next(key, hash, view, tried)!;
  t.notOk(tried.has(third.backend));
  tried.add(third.backend);
  t.equal(router.names[router.next(key, hash, view, tried)!.backend], 'x', 'primaries exhausted: the backup');
  tried.add(3);
  t.equal(router.next(key, hash, view, tried), null, 'everything tried');
  t.equal(router.next(null, 0, view, new Set())!.write, false, 'no key: nothing to write');
});

t.test('decide agrees with the ring point it reports', async (t) => {
  const router = new Router(MEMBERS, 'consistent_hash', 1000);
  const key = 'ip:10.9.8.7';
  const d = router.decide(key, hashKey(key), null, fakeView(MEMBERS, {}))!;
  t.ok(d.point >= 0);
  t.type(router.balancer, ConsistentHash);
  const ring = (router.balancer as ConsistentHash).primary;
  t.equal(ring.owners[d.point], d.backend, 'the point belongs to the chosen backend');
  t.equal(ring.pointFor(hashKey(key)), d.point, 'with everything up, the first point clockwise');
});

t.test('draining as the last resort (SPEC §15): only when no other backend takes new keys', async (t) => {
  const members: PoolMember[] = [
    { name: 'a', weight: 1, backup: false },
    { name: 'b', weight: 1, backup: false },
    { name: 'x', weight: 1, backup: true },
  ];
  const router = new Router(members, 'consistent_hash', 100);
  const withLastResort = (s: State): BackendView => {
    const v = fakeView(members, s);
    const has = (list: string[] | undefined, i: number) => (list ?? []).includes(members[i]!.name);
    return { ...v, lastResort: (i) => has(s.draining, i) && !has(s.down, i) && !has(s.disabled, i) };
  };
  const table = newTable();
  t.same(connect(router, table, 'k1', withLastResort({ draining: ['a'] }))?.backend, 'b', 'a is draining, b takes the new key');
  t.same(connect(router, table, 'k2', withLastResort({ draining: ['a'], down: ['b'] }))?.backend, 'x', 'the backup comes before a draining primary');
  const lr = connect(router, table, 'k3', withLastResort({ draining: ['a'], down: ['b', 'x'] }));
  t.same(lr, { backend: 'a', via: 'last_resort', write: true }, 'nothing else: the draining backend takes it, and the entry is written');
  t.equal(connect(router, newTable(), 'k4', withLastResort({ draining: ['a'], down: ['b', 'x'], disabled: ['a'] })), null, 'disabled is never a last resort');
  t.equal(connect(router, newTable(), 'k5', fakeView(members, { draining: ['a'], down: ['b', 'x'] })), null, 'a view without lastResort (explain) refuses as before');
  const next = router.next('k6', router.hash('k6'), withLastResort({ draining: ['a'], down: ['x'] }), new Set([1]));
  t.same(next && { backend: router.names[next.backend], via: next.via }, { backend: 'a', via: 'last_resort' }, 'failover too: b failed, only draining a is left');
});
