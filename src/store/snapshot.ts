/**
 * Persistence snapshots: the table written atomically (temporary file,
 * fsync, rename) and read back at start. The file is one JSON document
 * whose body carries a SHA-256, so an empty, truncated, edited or foreign
 * file is detected and ignored rather than half-loaded.
 *
 *   {"format":"l4lb-persistence","version":1,"written_at":<ms>,"sha256":"<hex of entries JSON>",
 *    "entries":[["ip:10.1.2.3","b1",<expires_at ms>], ...]}
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import type { LocalTable } from '../routing/persistence.js';

const FORMAT = 'l4lb-persistence';
const VERSION = 1;

type Row = [key: string, backend: string, expiresAt: number];

export async function saveSnapshot(path: string, table: LocalTable, now = Date.now()): Promise<number> {
  const rows: Row[] = [];
  for (const e of table.entries()) rows.push([e.key, e.backend, e.expiresAt ?? now + table.ttlMs]);
  const body = JSON.stringify(rows);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const text = `{"format":"${FORMAT}","version":${VERSION},"written_at":${now},"sha256":"${sha256}","entries":${body}}\n`;
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return rows.length;
}

export type LoadResult = { ok: true; loaded: number; skipped: number } | { ok: false; reason: string; missing?: boolean };

/** Load entries whose backend `known` accepts, with their remaining ttl. Never throws for a bad file. */
export async function loadSnapshot(path: string, table: LocalTable, known: (backend: string) => boolean, now = Date.now()): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'no snapshot yet' : `cannot read: ${code}`, missing: code === 'ENOENT' };
  }
  if (text.trim() === '') return { ok: false, reason: 'empty file' };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not a complete JSON document (truncated or foreign)' };
  }
  const d = doc as { format?: unknown; version?: unknown; sha256?: unknown; entries?: unknown };
  if (d.format !== FORMAT) return { ok: false, reason: 'not an l4lb persistence snapshot' };
  if (d.version !== VERSION) return { ok: false, reason: `unsupported snapshot version ${String(d.version)}` };
  if (!Array.isArray(d.entries)) return { ok: false, reason: 'no entries' };
  const sha = createHash('sha256').update(JSON.stringify(d.entries)).digest('hex');
  if (sha !== d.sha256) return { ok: false, reason: 'checksum mismatch (edited or corrupt)' };
  let loaded = 0;
  let skipped = 0;
  const rows = d.entries as unknown[];
  // Written most recently used first: restore in reverse so the LRU order survives.
  for (let i = rows.length - 1; i >= 0; i--) {
    const row = rows[i];
    if (!Array.isArray(row) || typeof row[0] !== 'string' || typeof row[1] !== 'string' || typeof row[2] !== 'number') return { ok: false, reason: 'malformed entry' };
    const [key, backend, expiresAt] = row as Row;
    if (!known(backend) || expiresAt <= now) {
      skipped++;
      continue;
    }
    table.restore(key, backend, expiresAt - now);
    loaded++;
  }
  return { ok: true, loaded, skipped };
}
