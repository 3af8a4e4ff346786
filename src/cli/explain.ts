/**
 * `l4lb explain`: where a client would go, and why, computed by the same
 * Router as live traffic with every backend up and an empty table.
 */
import type { Config, FrontendConfig } from '../config/schema.js';
import { canonicalIp, sniKey, sourceIpKey } from '../routing/affinity.js';
import type { BackendView } from '../routing/balancer.js';
import { ConsistentHash } from '../routing/balancer.js';
import { Router } from '../routing/router.js';
import { L4lbError } from '../errors.js';

export interface ClientExplanation {
  frontend: string;
  client: string;
  key: string | null;
  key_source: 'socket' | 'sni' | 'fallback';
  hash: number | null;
  point: number | null;
  point_hash: number | null;
  backend: string | null;
  address: string | null;
  via: string;
}

export function pickFrontend(config: Config, name?: string): FrontendConfig {
  if (name === undefined) return config.frontends[0]!;
  const fe = config.frontends.find((f) => f.name === name);
  if (!fe) throw new L4lbError('L4LB_ERR_ARGS', `--frontend: no frontend named "${name}" (have: ${config.frontends.map((f) => f.name).join(', ')})`);
  return fe;
}

const allUp = (fe: FrontendConfig): BackendView => ({
  acceptsNew: (i) => fe.backends[i]!.weight > 0,
  keeps: () => true,
  hasRoom: () => true,
  active: () => 0,
});

export function explainClient(fe: FrontendConfig, client: string, sni?: string): ClientExplanation {
  let ip: string;
  try {
    ip = canonicalIp(client);
  } catch {
    throw new L4lbError('L4LB_ERR_ARGS', `--client: "${client}" is not an IP address`);
  }
  let key: string | null = null;
  let source: ClientExplanation['key_source'] = 'socket';
  if (fe.affinity.key === 'sni') {
    if (sni) ((key = sniKey(sni)), (source = 'sni'));
    else if (fe.affinity.fallback === 'source_ip') ((key = sourceIpKey(ip, fe.affinity)), (source = 'fallback'));
    else source = 'fallback';
  } else if (fe.affinity.key === 'source_ip') {
    key = sourceIpKey(ip, fe.affinity);
  }
  const router = new Router(fe.backends, fe.balance.algorithm, fe.balance.vnodes, { boundedLoad: fe.balance.bounded_load, onRecovery: fe.persistence.on_recovery });
  const hash = key === null ? null : router.hash(key);
  const d = router.decide(key, hash ?? 0, null, allUp(fe));
  const b = d ? fe.backends[d.backend]! : null;
  let pointHash: number | null = null;
  if (d && d.point >= 0 && router.balancer instanceof ConsistentHash) {
    const ring = b!.backup ? router.balancer.backup : router.balancer.primary;
    pointHash = ring.hashes[d.point]!;
  }
  return {
    frontend: fe.name,
    client: ip,
    key,
    key_source: source,
    hash,
    point: d && d.point >= 0 ? d.point : null,
    point_hash: pointHash,
    backend: b?.name ?? null,
    address: b?.address.text ?? null,
    via: fe.balance.algorithm,
  };
}

export interface RingExplanation {
  frontend: string;
  points: number;
  backends: { name: string; weight: number; backup: boolean; points: number; share: number }[];
}

export function explainRing(fe: FrontendConfig): RingExplanation {
  const ch = new ConsistentHash(fe.backends, fe.balance.vnodes);
  const shares = ch.primary.shares();
  const points = new Array<number>(fe.backends.length).fill(0);
  for (const o of ch.primary.owners) points[o]!++;
  return {
    frontend: fe.name,
    points: ch.primary.size,
    backends: fe.backends.map((b, i) => ({ name: b.name, weight: b.weight, backup: b.backup, points: points[i]!, share: shares[i]! })),
  };
}

export function formatClient(e: ClientExplanation): string {
  const hex = (n: number | null) => (n === null ? '-' : `0x${n.toString(16).padStart(8, '0')}`);
  const lines = [
    `frontend  ${e.frontend}`,
    `client    ${e.client}`,
    `key       ${e.key ?? '(none: no persistence)'}  [${e.key_source}]`,
  ];
  if (e.hash !== null) lines.push(`hash      ${hex(e.hash)}`);
  if (e.point !== null) lines.push(`ring      point #${e.point} at ${hex(e.point_hash)}, the first clockwise from the hash`);
  lines.push(e.backend ? `backend   ${e.backend} (${e.address}) by ${e.via}` : 'backend   none eligible');
  if (e.via !== 'consistent_hash') lines.push(`note      ${e.via} is not deterministic: this is only the first pick of a fresh process`);
  lines.push('note      with every backend up and an empty persistence table; a live entry (GET /persistence) wins over this');
  return lines.join('\n');
}

export function formatRing(r: RingExplanation): string {
  const w = Math.max(7, ...r.backends.map((b) => b.name.length));
  const head = `${'backend'.padEnd(w)}  weight  points   share`;
  const rows = r.backends.map(
    (b) => `${b.name.padEnd(w)}  ${String(b.weight).padStart(6)}  ${String(b.points).padStart(6)}  ${(b.share * 100).toFixed(3).padStart(6)}%${b.backup ? '  (backup: separate ring)' : ''}`,
  );
  const live = r.backends.filter((b) => !b.backup && b.weight > 0);
  const fair = live.reduce((s, b) => s + b.weight, 0);
  const worst = Math.max(...live.map((b) => b.share / (b.weight / fair)));
  return [`frontend ${r.frontend}: ${r.points} ring points`, head, ...rows, `max share / fair share: ${worst.toFixed(4)}`].join('\n');
}
