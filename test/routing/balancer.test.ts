/**
 * Balancers against a fake BackendView: the consistent-hash failover walk
 * (next eligible clockwise, skipping `tried`, backups only when no primary
 * is left), round robin and least connections. Failover scenarios are data
 * tables with the expected sequence of attempts (undici balanced-pool style):
 * `'d/refused'` is an attempt the fake dialer refused, `'closed'` a
 * connection whose attempts all failed, `'none'` no eligible backend at all.
 */
import t from 'tap';
import {
  ConsistentHash,
  RoundRobin,
  createBalancer,
  type Balancer,
  type BackendView,
  type PoolMember,
} from '../../src/routing/balancer';
import { hashKey } from '../../src/routing/hash';

interface State {
  down?: string[];
  draining?: string[];
  disabled?: string[];
  /** At max_connections. */
  full?: string[];
  active?: Record<string, number>;
}

/** The fake view: sets of names, read on every call (as the live view is). */
function fakeView(names: readonly string[], s: State, weights?: readonly number[]): BackendView {
  const has = (list: string[] | undefined, i: number) => (list ?? []).includes(names[i]!);
  return {
    acceptsNew: (i) => !has(s.down, i) && !has(s.draining, i) && !has(s.disabled, i) && (weights?.[i] ?? 1) > 0,
    keeps: (i) => !has(s.down, i) && !has(s.disabled, i),
    hasRoom: (i) => !has(s.full, i),
    active: (i) => s.active?.[names[i]!] ?? 0,
  };
}

interface Scenario extends State {
  /** Backends whose connect is refused (the fake dialer). */
  refuse?: string[];
  retries?: number;
  connections?: number;
  expect: string[];
}

/** Run `connections` connections through pick/failover, as the session does; returns the attempt sequence. */
function run(balancer: Balancer, names: readonly string[], hash: number, sc: Scenario): string[] {
  const view = fakeView(names, sc);
  const out: string[] = [];
  for (let c = 0; c < (sc.connections ?? 2); c++) {
    const tried = new Set<number>();
    let attempts = 0;
    for (;;) {
      const p = balancer.pick(hash, view, tried);
      if (p === null) {
        out.push(tried.size === 0 ? 'none' : 'closed');
        break;
      }
      const name = names[p.backend]!;
      if (tried.has(p.backend)) {
        out.push(`${name}/picked-again`); // never expected: a tried backend is skipped
        break;
      }
      attempts++;
      if (!(sc.refuse ?? []).includes(name)) {
        out.push(name);
        break;
      }
      out.push(`${name}/refused`);
      tried.add(p.backend);
      if (attempts > (sc.retries ?? 2)) {
        out.push('closed');
        break;
      }
    }
  }
  return out;
}

const label = (sc: Scenario) =>
  JSON.stringify(Object.fromEntries(Object.entries(sc).filter(([k]) => k !== 'expect'))).replace(/"/g, '');

// Primaries a..d, backups x, y.
const MEMBERS: PoolMember[] = [
  { name: 'a', weight: 1, backup: false },
  { name: 'b', weight: 1, backup: false },
  { name: 'c', weight: 1, backup: false },
  { name: 'd', weight: 1, backup: false },
  { name: 'x', weight: 1, backup: true },
  { name: 'y', weight: 1, backup: true },
];
const NAMES = MEMBERS.map((m) => m.name);

t.test('consistent_hash: failover walk', async (t) => {
  const ch = new ConsistentHash(MEMBERS, 1000);
  // With everything eligible, ip:10.1.2.3 (hash 4169241981) meets the owners
  // clockwise in the order d, b, c, a on the primary ring, then y, x on the backup ring.
  const hash = hashKey('ip:10.1.2.3');
  t.equal(hash, 4169241981);

  const scenarios: Scenario[] = [
    { expect: ['d', 'd'] },
    { down: ['d'], expect: ['b', 'b'] },
    { down: ['d', 'b'], expect: ['c', 'c'] },
    { down: ['a'], expect: ['d', 'd'] }, // a flap elsewhere moves nothing
    { draining: ['d'], expect: ['b', 'b'] },
    { disabled: ['d'], expect: ['b', 'b'] },
    { full: ['d'], expect: ['b', 'b'] },
    { refuse: ['d'], expect: ['d/refused', 'b', 'd/refused', 'b'] },
    { refuse: ['d', 'b'], expect: ['d/refused', 'b/refused', 'c', 'd/refused', 'b/refused', 'c'] },
    { down: ['b'], refuse: ['d'], expect: ['d/refused', 'c', 'd/refused', 'c'] },
    // retries 2 = 3 attempts, then the client is closed
    { refuse: ['d', 'b', 'c'], connections: 1, expect: ['d/refused', 'b/refused', 'c/refused', 'closed'] },
    { refuse: ['d'], retries: 0, connections: 1, expect: ['d/refused', 'closed'] },
    // backups only when no primary is eligible
    { down: ['a', 'b', 'c', 'd'], expect: ['y', 'y'] },
    { down: ['a', 'b'], draining: ['c'], disabled: ['d'], expect: ['y', 'y'] },
    { full: ['a', 'b', 'c', 'd'], expect: ['y', 'y'] },
    { down: ['a', 'b', 'c', 'd', 'y'], expect: ['x', 'x'] },
    // within failover, a backup is tried once no primary is left untried
    { down: ['b', 'c'], refuse: ['d', 'a'], connections: 1, expect: ['d/refused', 'a/refused', 'y'] },
    { refuse: ['d', 'b', 'c', 'a'], retries: 5, connections: 1, expect: ['d/refused', 'b/refused', 'c/refused', 'a/refused', 'y'] },
    { refuse: ['d', 'b', 'c', 'a', 'y'], retries: 9, connections: 1, expect: ['d/refused', 'b/refused', 'c/refused', 'a/refused', 'y/refused', 'x'] },
    { refuse: NAMES, retries: 9, connections: 1, expect: ['d/refused', 'b/refused', 'c/refused', 'a/refused', 'y/refused', 'x/refused', 'closed'] },
    { down: NAMES, expect: ['none', 'none'] },
  ];
  for (const sc of scenarios) t.same(run(ch, NAMES, hash, sc), sc.expect, label(sc));

  t.test('the pick reports the ring point it stopped at', async (t) => {
    const p = ch.pick(hash, fakeView(NAMES, { down: ['d'] }), new Set())!;
    t.equal(NAMES[p.backend], 'b');
    t.equal(ch.primary.owners[p.point], p.backend, 'point is owned by the picked backend');
    const backup = ch.pick(hash, fakeView(NAMES, { down: ['a', 'b', 'c', 'd'] }), new Set())!;
    t.equal(ch.backup.owners[backup.point], backup.backend, 'a backup pick points into the backup ring');
  });

  t.test('backups own no primary points and vice versa', async (t) => {
    t.equal(ch.primary.size, 4000);
    t.equal(ch.backup.size, 2000);
    t.same([...new Set(ch.primary.owners)].sort(), [0, 1, 2, 3]);
    t.same([...new Set(ch.backup.owners)].sort(), [4, 5]);
  });
});

t.test('consistent_hash: one lap per pick, whatever the key', async (t) => {
  const ch = new ConsistentHash(MEMBERS, 100);
  for (let k = 0; k < 200; k++) {
    const hash = hashKey(`ip:198.51.100.${k}`);
    const tried = new Set<number>();
    const view = fakeView(NAMES, {});
    const order: string[] = [];
    for (let p = ch.pick(hash, view, tried); p; p = ch.pick(hash, view, tried)) {
      order.push(NAMES[p.backend]!);
      tried.add(p.backend);
    }
    if (order.length !== 6 || !order.slice(4).every((n) => n === 'x' || n === 'y')) {
      t.fail(`key ${k}: every backend once, primaries first; got ${order.join(',')}`);
      return;
    }
  }
  t.pass('200 keys: each failover sequence lists every backend once, backups last');
});

t.test('round_robin', async (t) => {
  const members: PoolMember[] = [
    { name: 'a', weight: 1, backup: false },
    { name: 'b', weight: 1, backup: false },
    { name: 'c', weight: 1, backup: false },
    { name: 'x', weight: 1, backup: true },
  ];
  const names = members.map((m) => m.name);
  const scenarios: Scenario[] = [
    { connections: 6, expect: ['a', 'b', 'c', 'a', 'b', 'c'] },
    // a skipped backend's turns are shared, not all handed to its successor
    { down: ['b'], connections: 6, expect: ['a', 'c', 'a', 'c', 'a', 'c'] },
    { draining: ['a'], full: ['c'], connections: 3, expect: ['b', 'b', 'b'] },
    { down: ['a', 'b', 'c'], connections: 2, expect: ['x', 'x'] },
    { refuse: ['a'], connections: 3, expect: ['a/refused', 'b', 'c', 'a/refused', 'b'] },
    { refuse: ['a', 'b', 'c'], retries: 5, connections: 1, expect: ['a/refused', 'b/refused', 'c/refused', 'x'] },
    { down: names, connections: 1, expect: ['none'] },
  ];
  for (const sc of scenarios) {
    // Each scenario starts from a fresh balancer: its rotation is state.
    const rr = new RoundRobin(members, false);
    t.same(run(rr, names, 0, sc), sc.expect, label(sc));
  }

  t.test('the hash is ignored, point is -1', async (t) => {
    const rr = new RoundRobin(members, false);
    const view = fakeView(names, {});
    t.same(rr.pick(hashKey('k1'), view, new Set()), { backend: 0, point: -1 });
    t.same(rr.pick(hashKey('k1'), view, new Set()), { backend: 1, point: -1 });
  });

  t.test('weight 0 members are never picked', async (t) => {
    const withZero: PoolMember[] = [...members.slice(0, 3), { name: 'z', weight: 0, backup: false }];
    const rr = new RoundRobin(withZero, false);
    const everyone: BackendView = { acceptsNew: () => true, keeps: () => true, hasRoom: () => true, active: () => 0 };
    const seen = Array.from({ length: 8 }, () => withZero[rr.pick(0, everyone, new Set())!.backend]!.name);
    t.same(seen, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b']);
  });
});

t.test('least_conn', async (t) => {
  const members: PoolMember[] = [
    { name: 'a', weight: 1, backup: false },
    { name: 'b', weight: 1, backup: false },
    { name: 'c', weight: 1, backup: false },
    { name: 'x', weight: 1, backup: true },
  ];
  const names = members.map((m) => m.name);
  const scenarios: Scenario[] = [
    { active: { a: 3, b: 1, c: 2 }, connections: 2, expect: ['b', 'b'] },
    { active: { a: 3, b: 1, c: 2 }, down: ['b'], connections: 2, expect: ['c', 'c'] },
    { active: { a: 3, b: 1, c: 2 }, full: ['b'], connections: 1, expect: ['c'] },
    // ties are broken round robin
    { active: { a: 0, b: 0, c: 0 }, connections: 4, expect: ['a', 'b', 'c', 'a'] },
    { active: { a: 5, b: 1, c: 1 }, connections: 4, expect: ['b', 'c', 'b', 'c'] },
    // the least loaded backup is still only a backup
    { active: { a: 100, b: 100, c: 100, x: 0 }, connections: 1, expect: ['a'] },
    { active: { a: 3, b: 1, c: 2 }, refuse: ['b'], connections: 1, expect: ['b/refused', 'c'] },
    { down: ['a', 'b', 'c'], connections: 1, expect: ['x'] },
  ];
  for (const sc of scenarios) {
    const lc = new RoundRobin(members, true);
    t.same(run(lc, names, 0, sc), sc.expect, label(sc));
  }
});

t.test('createBalancer', async (t) => {
  t.type(createBalancer('consistent_hash', MEMBERS, 10), ConsistentHash);
  t.type(createBalancer('round_robin', MEMBERS, 10), RoundRobin);
  const lc = createBalancer('least_conn', MEMBERS, 10);
  t.type(lc, RoundRobin);
  const view = fakeView(NAMES, { active: { a: 9, b: 9, c: 1, d: 9 } });
  t.equal(NAMES[lc.pick(0, view, new Set())!.backend], 'c', 'least_conn really compares active counts');
  t.throws(() => createBalancer('random' as never, MEMBERS, 10), new Error('unknown algorithm random'));
});
