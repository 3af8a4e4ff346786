/**
 * The ring: a golden tiny ring (Envoy ring_hash_lb_test `Basic` style), the
 * clockwise walk, and the consistent-hashing promise of SPEC §1 as
 * properties: fair shares with the default vnodes, sampled keys agreeing with
 * the exact shares, weights, minimal key movement, list-order independence.
 */
import t from 'tap';
import { Ring, MAX_RING_POINTS, type RingMember } from '../../src/routing/ring';
import { hashKey } from '../../src/routing/hash';
import { ConsistentHash, type BackendView, type PoolMember } from '../../src/routing/balancer';
import { rng } from '../util/random';

const MAX = 2 ** 32 - 1;


/** `count` random keys, written like the keys l4lb makes (`ip:a.b.c.d`). */
function randomKeys(count: number, seed: number): string[] {
  const r = rng(seed);
  const byte = () => Math.floor(r() * 256);
  return Array.from({ length: count }, () => `ip:${byte()}.${byte()}.${byte()}.${byte()}`);
}

const equal = (n: number, prefix = 'backend-'): RingMember[] =>
  Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i + 1}`, weight: 1 }));

const pool = (names: string[]): PoolMember[] => names.map((name) => ({ name, weight: 1, backup: false }));

const allEligible: BackendView = { acceptsNew: () => true, keeps: () => true, hasRoom: () => true, active: () => 0 };

const ownerName = (ring: Ring, point: number) => ring.names[ring.owners[point]!]!;

const KEYS = randomKeys(100_000, 0x14b);
const KEY_HASHES = KEYS.map(hashKey);

t.test('hashKey and backend points are MD5 big-endian words', async (t) => {
  // md5("") = d41d8cd98f00b204e9800998ecf8427e → first word 0xd41d8cd9
  t.equal(hashKey(''), 0xd41d8cd9);
  // md5("a") = 0cc175b9c0f1b6a831c399e269772661
  t.equal(hashKey('a'), 0x0cc175b9);
});

t.test('golden ring: 2 backends x 3 vnodes', async (t) => {
  const ring = Ring.build(
    [
      { name: 'a', weight: 1 },
      { name: 'b', weight: 1 },
    ],
    3,
  );
  // Expected ring: the first three big-endian words of md5("a#0") and of md5("b#0"), sorted:
  //   index  hash         owner
  //   0      509158149    b
  //   1      826354308    b
  //   2      1731565770   a
  //   3      3627721093   a
  //   4      3761897689   b
  //   5      4106989758   a
  const expected: [number, string][] = [
    [509158149, 'b'],
    [826354308, 'b'],
    [1731565770, 'a'],
    [3627721093, 'a'],
    [3761897689, 'b'],
    [4106989758, 'a'],
  ];
  t.equal(ring.size, 6);
  t.same(
    Array.from(ring.hashes, (h, i) => [h, ownerName(ring, i)]),
    expected,
    'hashes and owners',
  );

  const lookups: [number, number, string][] = [
    // [hash, expected point index, expected owner]
    [0, 0, 'b'],
    [MAX, 0, 'b'], // past the last point: wraps to the first
    [509158149, 0, 'b'], // exactly on a point: that point
    [509158150, 1, 'b'],
    [826354308, 1, 'b'],
    [826354309, 2, 'a'], // point + 1 goes to the next point, another owner
    [4106989758, 5, 'a'], // the last point exactly
    [4106989759, 0, 'b'], // last point + 1 wraps
  ];
  for (const [hash, point, owner] of lookups) {
    t.equal(ring.pointFor(hash), point, `pointFor(${hash})`);
    t.equal(ownerName(ring, ring.pointFor(hash)), owner, `owner at ${hash}`);
    t.same(ring.walk(hash, () => true), { owner: ring.names.indexOf(owner), point }, `walk(${hash})`);
  }

  // Exact shares from the arcs above: a owns (826354308,1731565770], (1731565770,3627721093]
  // and (3761897689,4106989758].
  const a = (1731565770 - 826354308 + (3627721093 - 1731565770) + (4106989758 - 3761897689)) / 2 ** 32;
  const [shareA, shareB] = ring.shares();
  t.ok(Math.abs(shareA! - a) < 1e-12, `share of a is ${a}`);
  t.ok(Math.abs(shareB! - (1 - a)) < 1e-12, `share of b is ${1 - a}`);
});

t.test('empty ring', async (t) => {
  const ring = Ring.build([], 1000);
  t.equal(ring.size, 0);
  t.equal(ring.pointFor(123), -1);
  t.equal(ring.walk(123, () => true), null);
  t.same(ring.shares(), []);
  const zero = Ring.build([{ name: 'z', weight: 0 }], 1000);
  t.equal(zero.size, 0, 'only weight-0 members: no points');
  t.equal(zero.walk(0, () => true), null);
  t.same(zero.shares(), [0]);
});

t.test('too many backends is refused with a message naming the count', async (t) => {
  const many = Array.from({ length: 65536 }, (_, i) => ({ name: `b${i}`, weight: 1 }));
  t.throws(() => Ring.build(many, 1), new RangeError('ring: too many backends (65536 > 65535)'));
});

t.test('walk', async (t) => {
  const ring = Ring.build(equal(4, 'w'), 50);
  const rejecting = (names: string[]) => (owner: number) => !names.includes(ring.names[owner]!);

  t.test('skips rejected owners, clockwise', async (t) => {
    for (const hash of KEY_HASHES.slice(0, 500)) {
      const first = ring.walk(hash, () => true)!;
      const firstName = ring.names[first.owner]!;
      const second = ring.walk(hash, rejecting([firstName]))!;
      t.not(ring.names[second.owner], firstName);
      // The second owner is the first point clockwise from `first` not owned by firstName.
      let p = first.point;
      while (ring.owners[p] === first.owner) p = (p + 1) % ring.size;
      if (second.point !== p || second.owner !== ring.owners[p]) {
        t.fail(`walk(${hash}) skipping ${firstName} should stop at point ${p}, got ${second.point}`);
        return;
      }
    }
    t.pass('500 walks stop at the next point of another owner');
  });

  t.test('wraps past the end of the ring', async (t) => {
    const last = ring.size - 1;
    const lastOwner = ring.owners[last]!;
    const hit = ring.walk(ring.hashes[last]!, (o) => o !== lastOwner)!;
    let p = 0;
    while (ring.owners[p] === lastOwner) p++;
    t.same(hit, { owner: ring.owners[p], point: p }, 'continues from index 0');
  });

  t.test('visits each owner once, then gives up after one lap', async (t) => {
    const asked: string[] = [];
    const hit = ring.walk(12345, (o) => (asked.push(ring.names[o]!), false));
    t.equal(hit, null);
    t.same([...asked].sort(), ['w1', 'w2', 'w3', 'w4'], 'each member asked exactly once');
  });

  t.test('finds the only accepted owner wherever it sits', async (t) => {
    for (const name of ring.names) {
      const hit = ring.walk(0, (o) => ring.names[o] === name);
      t.equal(hit && ring.names[hit.owner], name);
    }
  });
});

t.test('ring points derive from names, not list order', async (t) => {
  const members: RingMember[] = [
    { name: 'db-1', weight: 1 },
    { name: 'db-2', weight: 2 },
    { name: 'db-3', weight: 3 },
    { name: 'db-4', weight: 1 },
  ];
  const a = Ring.build(members, 1000);
  const b = Ring.build([...members].reverse(), 1000);
  const c = Ring.build([members[2]!, members[0]!, members[3]!, members[1]!], 1000);
  for (const [label, other] of [
    ['reversed', b],
    ['shuffled', c],
  ] as const) {
    t.same(Buffer.from(other.hashes.buffer), Buffer.from(a.hashes.buffer), `${label}: same hashes`);
    let same = true;
    for (let i = 0; i < a.size && same; i++) same = ownerName(a, i) === ownerName(other, i);
    t.ok(same, `${label}: same owner name at every point`);
  }
  const shares = (r: Ring) => Object.fromEntries(r.names.map((n, i) => [n, r.shares()[i]]));
  t.same(shares(b), shares(a), 'same shares by name');
});

t.test('weight 0 gets no points', async (t) => {
  const ring = Ring.build(
    [
      { name: 'x', weight: 1 },
      { name: 'zero', weight: 0 },
      { name: 'y', weight: 1 },
    ],
    100,
  );
  t.equal(ring.size, 200);
  t.notOk(ring.owners.includes(1), 'no point owned by the weight-0 member');
  t.equal(ring.shares()[1], 0);
  const asked: number[] = [];
  t.equal(ring.walk(0, (o) => (asked.push(o), false)), null);
  t.same(asked.sort(), [0, 2], 'the walk never offers the weight-0 member');
});

t.test('MAX_RING_POINTS scales vnodes down for huge weights', async (t) => {
  t.equal(MAX_RING_POINTS, 1 << 20);
  const members: RingMember[] = [
    { name: 'big-1', weight: 256 },
    { name: 'big-2', weight: 256 },
    { name: 'big-3', weight: 128 },
    { name: 'tiny', weight: 1 },
  ];
  const wanted = (256 + 256 + 128 + 1) * 10_000; // 6.41M points wanted
  const ring = Ring.build(members, 10_000);
  t.ok(ring.size <= MAX_RING_POINTS + members.length, `size ${ring.size} is capped near ${MAX_RING_POINTS}`);
  t.ok(ring.size >= MAX_RING_POINTS - members.length, `size ${ring.size} uses the budget`);
  const scale = MAX_RING_POINTS / wanted;
  const counts = members.map((_, i) => ring.owners.reduce((s, o) => s + (o === i ? 1 : 0), 0));
  members.forEach((m, i) => {
    t.equal(counts[i], Math.max(1, Math.round(m.weight * 10_000 * scale)), `${m.name}: weight x vnodes x scale points`);
  });
  t.ok(counts[3]! >= 1, 'a small weight keeps at least one point');
  const shares = ring.shares();
  t.ok(Math.abs(shares[0]! / shares[2]! - 2) < 0.1, `256:128 still ~2:1 (${(shares[0]! / shares[2]!).toFixed(3)})`);

  const under = Ring.build(equal(3), 1000);
  t.equal(under.size, 3000, 'below the cap: exactly weight x vnodes');
});

t.test('fair shares with the default 1000 vnodes: max/mean <= 1.10', async (t) => {
  for (const n of [3, 10, 50]) {
    const ring = Ring.build(equal(n), 1000);
    const shares = ring.shares();
    const sum = shares.reduce((s, x) => s + x, 0);
    t.ok(Math.abs(sum - 1) < 1e-9, `${n}: shares sum to 1`);
    const mean = 1 / n;
    const maxOverMean = Math.max(...shares) / mean;
    const minOverMean = Math.min(...shares) / mean;
    t.comment(`N=${n}: max/mean ${maxOverMean.toFixed(4)}, min/mean ${minOverMean.toFixed(4)}`);
    t.ok(maxOverMean <= 1.1, `N=${n}: max/mean ${maxOverMean.toFixed(4)} <= 1.10`);
  }
});

t.test('100k sampled keys agree with the exact shares', async (t) => {
  for (const n of [3, 10, 50]) {
    const ring = Ring.build(equal(n), 1000);
    const shares = ring.shares();
    const counts = new Array<number>(n).fill(0);
    for (const h of KEY_HASHES) counts[ring.owners[ring.pointFor(h)]!]!++;
    let worst = 0;
    const bad: string[] = [];
    counts.forEach((c, i) => {
      const observed = c / KEY_HASHES.length;
      const diff = Math.abs(observed - shares[i]!);
      worst = Math.max(worst, diff);
      if (diff > 0.01 && diff > 0.05 * shares[i]!) bad.push(`${ring.names[i]}: observed ${observed}, share ${shares[i]}`);
    });
    t.comment(`N=${n}: worst |observed - share| = ${(worst * 100).toFixed(3)} percentage points`);
    t.same(bad, [], `N=${n}: every backend within 1pp or 5% of its share`);
    const maxObserved = Math.max(...counts) / (KEY_HASHES.length / n);
    t.ok(maxObserved <= 1.1, `N=${n}: busiest backend gets ${maxObserved.toFixed(4)}x its fair share of keys`);
  }
});

t.test('weights 1:2:3 give shares within 10% of 1/6, 2/6, 3/6', async (t) => {
  const ring = Ring.build(
    [
      { name: 'backend-1', weight: 1 },
      { name: 'backend-2', weight: 2 },
      { name: 'backend-3', weight: 3 },
    ],
    1000,
  );
  const shares = ring.shares();
  [1 / 6, 2 / 6, 3 / 6].forEach((want, i) => {
    const rel = Math.abs(shares[i]! - want) / want;
    t.ok(rel <= 0.1, `backend-${i + 1}: share ${shares[i]!.toFixed(4)} vs ${want.toFixed(4)} (${(rel * 100).toFixed(2)}% off)`);
  });
});

t.test('removing one of 10 backends moves only its keys', async (t) => {
  const names = equal(10).map((m) => m.name);
  const before = new ConsistentHash(pool(names), 1000);
  const removed = 'backend-4';
  const after = new ConsistentHash(pool(names.filter((n) => n !== removed)), 1000);
  const afterNames = names.filter((n) => n !== removed);
  const removedIdx = names.indexOf(removed);
  // The same backend marked down (not removed): the walk must agree with the rebuilt ring.
  const down: BackendView = { ...allEligible, acceptsNew: (i) => i !== removedIdx };
  const none = new Set<number>();

  let moved = 0;
  let wrongly = 0;
  let disagree = 0;
  let wasOnRemoved = 0;
  for (const h of KEY_HASHES) {
    const b = names[before.pick(h, allEligible, none)!.backend]!;
    const a = afterNames[after.pick(h, allEligible, none)!.backend]!;
    const d = names[before.pick(h, down, none)!.backend]!;
    if (b === removed) wasOnRemoved++;
    if (a !== b) {
      moved++;
      if (b !== removed) wrongly++;
    }
    if (a !== d) disagree++;
  }
  const fraction = moved / KEY_HASHES.length;
  t.comment(`remove 1 of 10: ${(fraction * 100).toFixed(2)}% of 100k keys moved (optimal 1/10 = 10%)`);
  t.equal(wrongly, 0, 'no key that was on another backend moved');
  t.equal(moved, wasOnRemoved, 'every key of the removed backend moved');
  t.ok(fraction <= 0.1 * 1.1, `moved fraction ${fraction} <= 1.10 x 1/10`);
  t.equal(disagree, 0, 'marking the backend down places keys exactly as removing it');
});

t.test('adding one to 10 backends moves at most 1/11 + 2%, all to the new one', async (t) => {
  const names = equal(10).map((m) => m.name);
  const before = new ConsistentHash(pool(names), 1000);
  const grown = [...names, 'backend-11'];
  const after = new ConsistentHash(pool(grown), 1000);
  const none = new Set<number>();
  let moved = 0;
  let elsewhere = 0;
  for (const h of KEY_HASHES) {
    const b = names[before.pick(h, allEligible, none)!.backend]!;
    const a = grown[after.pick(h, allEligible, none)!.backend]!;
    if (a !== b) {
      moved++;
      if (a !== 'backend-11') elsewhere++;
    }
  }
  const fraction = moved / KEY_HASHES.length;
  t.comment(`add 1 to 10: ${(fraction * 100).toFixed(2)}% of 100k keys moved (optimal 1/11 = ${(100 / 11).toFixed(2)}%)`);
  t.equal(elsewhere, 0, 'every moved key moved to the new backend');
  t.ok(fraction <= 1 / 11 + 0.02, `moved fraction ${fraction} <= 1/11 + 2%`);
  t.ok(fraction > 0, 'the new backend takes some keys');
});
