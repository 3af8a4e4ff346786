/**
 * Running out of file descriptors (SPEC §14). When l4lb has no descriptor
 * left, the runtime (libuv) accepts and at once closes pending connections,
 * without telling l4lb, and l4lb's own connects fail with EMFILE. Neither is
 * a backend's fault. This watch turns both into one line per episode and a
 * count: an episode starts at a local connect failure, an accept error, or a
 * descriptor count at the soft limit (read from /proc once a second); it ends
 * when the count is back below 90% of the limit.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Logger } from '../log.js';

export class ResourceWatch {
  private open = false;
  episodes = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly limit: number | null;

  constructor(private readonly log: Logger) {
    this.limit = softFdLimit();
  }

  /** Check the descriptor count once a second (Linux; elsewhere only the events count). */
  start(): void {
    if (this.limit === null || this.timer) return;
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** l4lb's own socket could not be had (EMFILE/ENFILE on connect or accept). */
  exhausted(what: string): void {
    if (this.open) return;
    this.open = true;
    this.episodes++;
    const n = openFds();
    this.log.error({ what, open_fds: n === Infinity ? 'all' : n, fd_limit: this.limit }, 'out of file descriptors: new connections are dropped until some close (not counted against backends)');
  }

  private tick(): void {
    const n = openFds();
    if (n === null || this.limit === null) return;
    if (!this.open && n >= this.limit - 1) this.exhausted('descriptor count at the limit');
    else if (this.open && n < this.limit * 0.9) {
      this.open = false;
      this.log.warn({ open_fds: n, fd_limit: this.limit }, 'file descriptors available again');
    }
  }
}

/** Descriptors open now; Infinity when not even one more could be opened to count them. */
function openFds(): number | null {
  try {
    return readdirSync('/proc/self/fd').length - 1; // minus the one readdir itself holds
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE' ? Infinity : null;
  }
}

function softFdLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
