/**
 * sniffProtocol (SPEC §9 `protocol` routes): a table of first bytes; every
 * proper prefix of every signature waits while more may come and is 'other'
 * once no more will; and random bytes, which never throw, decide by 8 bytes,
 * and never change their answer when more bytes arrive.
 */
import t from 'tap';
import { sniffProtocol, type Protocol } from '../../src/routing/sniff';
import { rng } from '../util/random';

type Sniffed = Protocol | 'need-more';
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const SIGNATURES: [Protocol, Buffer][] = [
  ['tls', Buffer.from([0x16, 0x03])],
  ['ssh', Buffer.from('SSH-')],
  ...METHODS.map((m): [Protocol, Buffer] => ['http', Buffer.from(`${m} `)]),
];

t.test('first bytes → protocol', async (t) => {
  const cases: [string, Buffer, Sniffed, Sniffed][] = [
    // what, bytes, not final, final
    ['a TLS 1.2 ClientHello record', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), 'tls', 'tls'],
    ['a TLS record header alone', Buffer.from([0x16, 0x03]), 'tls', 'tls'],
    ['a lone 0x16', Buffer.from([0x16]), 'need-more', 'other'],
    ['0x16 then record version 2', Buffer.from([0x16, 0x02]), 'other', 'other'],
    ['a TLS alert record', Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02]), 'other', 'other'],
    ['an SSLv2-style hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01]), 'other', 'other'],
    ['an OpenSSH banner', Buffer.from('SSH-2.0-OpenSSH_9.6\r\n'), 'ssh', 'ssh'],
    ['SSH- alone', Buffer.from('SSH-'), 'ssh', 'ssh'],
    ['"SS"', Buffer.from('SS'), 'need-more', 'other'],
    ['"SSH" without the dash', Buffer.from('SSH'), 'need-more', 'other'],
    ['"SSH_"', Buffer.from('SSH_2.0'), 'other', 'other'],
    ['"ssh-" in lower case', Buffer.from('ssh-2.0'), 'other', 'other'],
    ['GET', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'http', 'http'],
    ['OPTIONS *', Buffer.from('OPTIONS * HTTP/1.1\r\n'), 'http', 'http'],
    ['CONNECT', Buffer.from('CONNECT db.example.com:443 HTTP/1.1\r\n'), 'http', 'http'],
    ['PATCH', Buffer.from('PATCH /x HTTP/1.1\r\n'), 'http', 'http'],
    ['"GE"', Buffer.from('GE'), 'need-more', 'other'],
    ['"G"', Buffer.from('G'), 'need-more', 'other'],
    ['"P" (POST PUT PATCH)', Buffer.from('P'), 'need-more', 'other'],
    ['"GET" without the space', Buffer.from('GET'), 'need-more', 'other'],
    ['"GETX"', Buffer.from('GETX /'), 'other', 'other'],
    ['"get " in lower case', Buffer.from('get / HTTP/1.1\r\n'), 'other', 'other'],
    ['"GET\\t"', Buffer.from('GET\t/'), 'other', 'other'],
    ['an unknown method', Buffer.from('PROPFIND / HTTP/1.1\r\n'), 'other', 'other'],
    ['HTTP/2 prior knowledge (not HTTP/1)', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 'other', 'other'],
    ['a PROXY v1 header', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), 'other', 'other'],
    ['a PostgreSQL SSLRequest', Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), 'other', 'other'],
    ['an SMTP-ish client line', Buffer.from('EHLO x\r\n'), 'other', 'other'],
    ['nothing yet', Buffer.alloc(0), 'need-more', 'other'],
  ];
  for (const [what, buf, open, final] of cases) {
    t.equal(sniffProtocol(buf, false), open, `${what}, more may come`);
    t.equal(sniffProtocol(buf, true), final, `${what}, final`);
  }
});

t.test('every proper prefix of every signature waits, then decides', async (t) => {
  const bad: string[] = [];
  for (const [protocol, sig] of SIGNATURES) {
    for (let n = 0; n < sig.length; n++) {
      const prefix = sig.subarray(0, n);
      if (sniffProtocol(prefix, false) !== 'need-more') bad.push(`${JSON.stringify(prefix.toString('latin1'))} not final: ${sniffProtocol(prefix, false)}`);
      if (sniffProtocol(prefix, true) !== 'other') bad.push(`${JSON.stringify(prefix.toString('latin1'))} final: ${sniffProtocol(prefix, true)}`);
    }
    for (const final of [false, true]) {
      if (sniffProtocol(sig, final) !== protocol) bad.push(`${JSON.stringify(sig.toString('latin1'))} (final ${final})`);
      const more = Buffer.concat([sig, Buffer.from('/ x\r\n')]);
      if (sniffProtocol(more, final) !== protocol) bad.push(`${JSON.stringify(more.toString('latin1'))} (final ${final})`);
    }
  }
  t.same(bad, [], `${SIGNATURES.length} signatures`);
});

t.test('fuzz: random first bytes never throw, decide by 8 bytes, and keep their answer', async (t) => {
  const random = rng(0x5a1ff);
  const int = (n: number): number => Math.floor(random() * n);
  const OUTCOMES = new Set<Sniffed>(['tls', 'ssh', 'http', 'other', 'need-more']);
  const failures: string[] = [];
  const counts: Record<string, number> = {};
  const RUNS = 100_000;
  for (let i = 0; i < RUNS && failures.length < 10; i++) {
    // random bytes, often starting with (part of) a signature so every branch is reached
    let buf = Buffer.from(Array.from({ length: int(20) }, () => int(256)));
    if (random() < 0.6) {
      const sig = SIGNATURES[int(SIGNATURES.length)]![1];
      buf = Buffer.concat([sig.subarray(0, int(sig.length + 1)), buf]);
    }
    const cut = buf.subarray(0, int(buf.length + 1));
    try {
      const open = sniffProtocol(cut, false);
      const final = sniffProtocol(cut, true);
      const whole = sniffProtocol(buf, false);
      counts[open] = (counts[open] ?? 0) + 1;
      if (!OUTCOMES.has(open) || !OUTCOMES.has(final)) failures.push(`outcome ${open}/${final}`);
      if (final === 'need-more') failures.push(`need-more at final: ${cut.toString('hex')}`);
      if (open === 'need-more' && cut.length >= 8) failures.push(`need-more after ${cut.length} bytes: ${cut.toString('hex')}`);
      if (open !== 'need-more' && (final !== open || whole !== open)) failures.push(`${cut.toString('hex')}: ${open}, final ${final}, with more bytes ${whole}`);
      if (whole !== sniffProtocol(buf.subarray(0, 16), false)) failures.push(`looked past 16 bytes: ${buf.toString('hex')}`);
    } catch (err) {
      failures.push(`threw ${(err as Error).message} on ${cut.toString('hex')}`);
    }
  }
  t.same(failures, [], `${RUNS} inputs: ${JSON.stringify(counts)}`);
  t.ok(['tls', 'ssh', 'http', 'other', 'need-more'].every((k) => (counts[k] ?? 0) > 100), 'every outcome reached');
});
