/**
 * One net.Server per listen address. Admission (max_connections, allow/deny)
 * happens here; an admitted socket becomes a Session of the frontend's
 * current runtime.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Address } from '../config/schema.js';
import type { FrontendRuntime, RefusedReason } from '../runtime.js';
import { canonicalIp, sourceIpKey } from '../routing/affinity.js';
import type { Dialer } from './dialer.js';
import { Session, type SessionInit } from './session.js';
import { Handshake } from './handshake.js';
import { BindError } from '../errors.js';

export interface SessionHost {
  /** The frontend's current runtime (replaced on reload). */
  runtime(frontend: string): FrontendRuntime | undefined;
  readonly dialer: Dialer;
  readonly sessions: Set<Session>;
  /** A session is over (it has already logged its close line). */
  sessionEnded(s: Session): void;
}

export class Listener {
  private readonly server: Server;
  /** The bound port (the real one for port 0). */
  port = 0;

  constructor(
    readonly address: Address,
    /** Which frontend this address serves; may change on reload. */
    public frontend: string,
    private readonly host: SessionHost,
  ) {
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.accept(sock));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(new BindError(`cannot listen on ${this.address.text}: ${err.code ?? err.message}`));
      this.server.once('error', onError);
      this.server.listen({ host: this.address.host, port: this.address.port, ipv6Only: this.address.family === 6 }, () => {
        this.server.removeListener('error', onError);
        this.server.on('error', () => {}); // accept errors (EMFILE...) surface per connection; keep serving
        const a = this.server.address();
        this.port = typeof a === 'object' && a ? a.port : this.address.port;
        resolve(this.port);
      });
    });
  }

  /**
   * Stop accepting; open connections carry on. Resolves once the socket no
   * longer listens: server.close()'s own callback waits for every open
   * connection to end, which would keep shutdown_grace from ever starting.
   */
  close(): Promise<void> {
    if (this.server.listening) this.server.close();
    return Promise.resolve();
  }

  private accept(sock: Socket): void {
    const rt = this.host.runtime(this.frontend);
    const peer = sock.remoteAddress;
    if (!rt || peer === undefined) {
      // Stopping, or the client reset before we saw it (no peer address left to read).
      sock.on('error', () => {});
      sock.destroy();
      if (rt) {
        rt.stats.total++;
        rt.log.info({ client: null, key: null, key_source: null, backend: null, bytes_in: 0, bytes_out: 0, duration_ms: 0, reason: 'client_closed' }, 'connection closed');
      }
      return;
    }
    const ip = canonicalIp(peer);
    const fe = rt.config;
    rt.stats.total++; // every accepted socket, refused or not
    if (rt.stats.active >= fe.max_connections) return this.refuse(rt, sock, ip, 'over_limit');
    const trusted = fe.accept_proxy !== 'off' && rt.trusted.has(ip);
    if (fe.accept_proxy === 'required' && !trusted) return this.refuse(rt, sock, ip, 'untrusted_proxy');
    rt.stats.active++;
    const client = { address: ip, port: sock.remotePort ?? 0 };
    if (!trusted && fe.affinity.key !== 'sni') {
      // Nothing to peek at: route now (untrusted peers are not waited for).
      if (!rt.admission.permits(ip)) return this.reject(rt, sock, ip, 'denied');
      const key = fe.affinity.key === 'none' ? null : sourceIpKey(ip, fe.affinity);
      const guardProxy = fe.accept_proxy === 'optional';
      this.startSession(rt, sock, { client, destination: null, key, keySource: 'socket', early: null, ended: false, guardProxy });
      return;
    }
    const h = new Handshake(
      rt,
      sock,
      client,
      trusted,
      (p) => this.startSession(rt, sock, { ...p, guardProxy: false }),
      (reason, detail, who) => {
        rt.stats.active--;
        if (reason === 'client_closed') {
          rt.log.info({ client: who.address, key: null, key_source: null, backend: null, bytes_in: 0, bytes_out: 0, duration_ms: 0, reason, detail }, 'connection closed');
          return;
        }
        rt.stats.refused[reason]++;
        rt.log.info({ client: who.address, reason, detail }, 'connection refused');
      },
    );
    h.start();
  }

  private startSession(rt: FrontendRuntime, sock: Socket, init: SessionInit): void {
    const host = this.host;
    const s = new Session(rt, sock, init, host.dialer, (done) => host.sessionEnded(done));
    host.sessions.add(s);
    s.start();
  }

  /** Refused after it was counted active. */
  private reject(rt: FrontendRuntime, sock: Socket, ip: string, reason: RefusedReason): void {
    rt.stats.active--;
    this.refuse(rt, sock, ip, reason);
  }

  private refuse(rt: FrontendRuntime, sock: Socket, ip: string, reason: RefusedReason): void {
    rt.stats.refused[reason]++;
    sock.on('error', () => {}); // the refusal is what we log; a reset on the way out adds nothing
    sock.destroy();
    rt.log.info({ client: ip, reason }, 'connection refused');
  }
}
