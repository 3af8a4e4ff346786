/**
 * The status page at GET /: server-rendered, self-contained (no other hosts,
 * no scripts needed), refreshing itself every few seconds.
 */
import type { BackendStatus, FrontendStatus, PoolStatus, Status } from './control.js';

const esc = (s: string | number) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) ((n /= 1024), i++);
  return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`;
}

function ratio(h: number, m: number): string {
  return h + m === 0 ? '–' : `${((100 * h) / (h + m)).toFixed(1)}%`;
}

function backendRows(backends: readonly BackendStatus[]): string {
  return backends
    .map(
      (b) => `<tr class="${esc(b.state)}">
  <td>${esc(b.name)}${b.backup ? ' <small>backup</small>' : ''}</td><td><code>${esc(b.address)}</code></td>
  <td><span class="state">${esc(b.state)}</span>${b.state !== 'down' && b.health === 'down' ? ' <small>(down)</small>' : ''}</td><td>${b.weight}</td>
  <td>${b.active}</td><td>${b.total}</td><td>${bytes(b.bytes_in)}</td><td>${bytes(b.bytes_out)}</td><td>${b.connect_failures}</td></tr>`,
    )
    .join('\n');
}

/** A frontend: where it listens, its counters, and where its connections go. */
function frontend(fe: FrontendStatus): string {
  const refused = Object.values(fe.refused).reduce((a, b) => a + b, 0);
  const routes = fe.routes ?? [];
  const target =
    routes.length === 0
      ? `<p class="routes">every connection → pool <b>${esc(fe.pools[0] ?? '-')}</b></p>`
      : `<ol class="routes" start="0">${routes.map((r) => `<li>${r.name !== null ? `<b>${esc(r.name)}</b>: ` : ''}${esc(r.match)} → pool <b>${esc(r.pool)}</b></li>`).join('')}</ol>`;
  return `<div class="frontend card">
<h2>${esc(fe.name)} <small>frontend ${fe.listen.map((l) => `<code>${esc(l)}</code>`).join(' ')}</small></h2>
<div class="figures">
  <div><b>${fe.active}</b> open</div><div><b>${fe.total}</b> total</div><div><b>${refused}</b> refused</div>
  <div><b>${fe.failovers}</b> failovers</div><div><b>${fe.connect_failed + fe.no_backend}</b> failed</div>
  <div><b>${bytes(fe.bytes_in)}</b> in</div><div><b>${bytes(fe.bytes_out)}</b> out</div>
</div>
${target}
</div>`;
}

/** A pool: its backends with state and counters, and its persistence table. */
function pool(p: PoolStatus, from: readonly string[]): string {
  return `<section>
<h2>${esc(p.name)} <small>pool${from.length > 0 ? ` · from ${from.map((f) => esc(f)).join(', ')}` : ''}</small></h2>
<div class="figures">
  <div><b>${p.persistence.size}</b> persistence entries</div><div><b>${ratio(p.persistence.hits, p.persistence.misses)}</b> hit ratio</div>
  ${p.store ? `<div><b>${p.store.up ? 'up' : 'DOWN'}</b> store <code>${esc(p.store.url)}</code></div>` : ''}
</div>
<table>
<thead><tr><th>backend</th><th>address</th><th>state</th><th>weight</th><th>open</th><th>total</th><th>in</th><th>out</th><th>connect failures</th></tr></thead>
<tbody>
${backendRows(p.backends)}
</tbody>
</table>
</section>`;
}

export function statusPage(s: Status, refreshSeconds = 2): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${refreshSeconds}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>l4lb status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330;background:#f6f7f9}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:0 0 .5rem}small{color:#667;font-weight:normal}
section,.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:1rem;margin:1rem 0}.frontend{background:#fbfcfe}.routes{margin:.3rem 0 0}
.figures{display:flex;flex-wrap:wrap;gap:.4rem 1.4rem;margin-bottom:.7rem}.figures b{font-size:1.05rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eef}
td:nth-child(n+4){text-align:right}th:nth-child(n+4){text-align:right}
.state{display:inline-block;min-width:5.5em;text-align:center;border-radius:4px;padding:0 .4em;color:#fff;font-weight:600}
tr.up .state{background:#2e7d32}tr.down .state{background:#c62828}tr.draining .state{background:#ef6c00}tr.disabled .state{background:#616161}
tr.down td{background:#fdecea}code{font-size:.9em}
</style></head>
<body>
<h1>l4lb <small>${esc(s.version)} · up ${Math.floor(s.uptime_s)} s · refreshes every ${refreshSeconds} s</small></h1>
${s.frontends.map(frontend).join('\n')}
${s.pools.map((p) => pool(p, s.frontends.filter((f) => f.pools.includes(p.name)).map((f) => f.name))).join('\n')}
</body></html>
`;
}
