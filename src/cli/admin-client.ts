/** `l4lb status` and `l4lb drain|disable|enable FRONTEND/BACKEND`: a small client of the admin API. */
import { request } from 'node:http';
import type { Status } from '../admin/control.js';
import { loadConfig } from '../config/load.js';
import { parseHostPort } from '../config/parse.js';
import { L4lbError } from '../errors.js';

export interface AdminTarget {
  host: string;
  port: number;
  token: string | null;
}

/** --admin HOST:PORT wins; else the config file's admin block; else 127.0.0.1:9100. Token: --token, $L4LB_ADMIN_TOKEN, config. */
export function adminTarget(o: { admin?: string; config?: string; token?: string }): AdminTarget {
  let host = '127.0.0.1';
  let port = 9100;
  let token: string | null = o.token ?? process.env.L4LB_ADMIN_TOKEN ?? null;
  if (o.config) {
    const c = loadConfig(o.config);
    if (!c.admin && !o.admin) throw new L4lbError('L4LB_ERR_ARGS', `--config: ${o.config} has no admin block (or give --admin HOST:PORT)`);
    if (c.admin) ((host = c.admin.listen.host), (port = c.admin.listen.port), (token ??= c.admin.token));
  }
  if (o.admin) {
    const hp = parseHostPort(o.admin);
    if (typeof hp === 'string') throw new L4lbError('L4LB_ERR_ARGS', `--admin: ${hp}`);
    ((host = hp.host), (port = hp.port));
  }
  return { host, port, token };
}

export function call(t: AdminTarget, method: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (t.token) headers.authorization = `Bearer ${t.token}`;
    const req = request({ host: t.host, port: t.port, method, path, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new L4lbError('L4LB_ERR_ARGS', `cannot reach the admin API at ${t.host}:${t.port}: ${err.code ?? err.message}`)),
    );
    req.end();
  });
}

function human(n: number): string {
  const u = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) ((n /= 1024), i++);
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${u[i]}`;
}

/** `l4lb status`: each frontend (where it listens, where its connections go), then each pool with its backends. */
export function formatStatus(s: Status): string {
  const out: string[] = [];
  for (const fe of s.frontends) {
    const to = fe.routes ? fe.routes.map((r, i) => `${r.name ?? i}: ${r.match} -> ${r.pool}`).join(' | ') : `-> ${fe.pools.join(', ')}`;
    out.push(`${fe.name}  ${fe.listen.join(' ')}  open ${fe.active}  total ${fe.total}  failovers ${fe.failovers}  ${to}`);
  }
  out.push('');
  for (const pool of s.pools) {
    const p = pool.persistence;
    const ratio = p.hits + p.misses === 0 ? '-' : `${((100 * p.hits) / (p.hits + p.misses)).toFixed(1)}%`;
    const from = s.frontends.filter((f) => f.pools.includes(pool.name)).map((f) => f.name);
    out.push(`${pool.name}  pool${from.length > 0 ? ` (from ${from.join(', ')})` : ''}  entries ${p.size}  hit ratio ${ratio}${pool.store ? `  store ${pool.store.up ? 'up' : 'DOWN'}` : ''}`);
    const rows = [['BACKEND', 'ADDRESS', 'STATE', 'WEIGHT', 'OPEN', 'TOTAL', 'IN', 'OUT', 'FAILS']];
    for (const b of pool.backends) {
      rows.push([b.name + (b.backup ? ' (backup)' : ''), b.address, b.state, String(b.weight), String(b.active), String(b.total), human(b.bytes_in), human(b.bytes_out), String(b.connect_failures)]);
    }
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) out.push('  ' + r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd());
    out.push('');
  }
  return out.join('\n');
}
