/**
 * One net.Server per listen address. A connection reads top to bottom:
 * admission (max_connections, accept_proxy) → peek (only as the frontend's
 * plan says) → route → key → a Session of the chosen pool.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Address } from '../config/schema.js';
import type { PoolRuntime } from '../placement/pool.js';
import { canonicalIp } from '../routing/affinity.js';
import { affinityKey } from '../routing/keys.js';
import { BindError } from '../errors.js';
import type { Dialer } from './dialer.js';
import type { FrontendRuntime } from './frontend.js';
import { closed, refused } from './outcome.js';
import { Peek, type Peeked } from './peek.js';
import { Session } from './session.js';

export interface SessionHost {
  /** The frontend's current runtime (replaced on reload); undefined while stopping. */
  frontend(name: string): FrontendRuntime | undefined;
  /** The pool's current runtime. */
  pool(name: string): PoolRuntime | undefined;
  readonly dialer: Dialer;
  readonly sessions: Set<Session>;
  /** A session is over (it has already logged its close line). */
  sessionEnded(s: Session): void;
}

const NO_ALPN: readonly string[] = Object.freeze([]);


export class Listener {
  private readonly server: Server;
  /** The bound port (the real one for port 0). */
  port = 0;

  constructor(
    /** As the config wrote it (port 0 for "any"). */
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
        this.server.on('error', (err: NodeJS.ErrnoException) => this.acceptFailed(err)); // keep serving
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

  /**
   * accept() failed: out of file descriptors (EMFILE, ENFILE) or another local error. libuv drops the
   * pending connection and goes on listening; l4lb logs once per episode and counts every failure.
   */
  private acceptFailed(err: NodeJS.ErrnoException): void {
    const fe = this.host.frontend(this.frontend);
    if (!fe) return;
    fe.stats.acceptErrors++;
    fe.resources.exhausted(`accept on ${this.address.host}:${this.port}: ${err.code ?? err.message}`);
  }

  private accept(sock: Socket): void {
    const fe = this.host.frontend(this.frontend);
    const peer = sock.remoteAddress;
    if (!fe || peer === undefined) {
      // Stopping, or the client reset before we saw it (no peer address left to read).
      sock.on('error', () => {});
      sock.destroy();
      if (fe) {
        fe.stats.total++;
        closed(fe, { client: null, key: null, keySource: null, pool: null, route: null, backend: null, bytesIn: 0, bytesOut: 0, durationMs: 0, reason: 'client_closed', wasActive: false });
      }
      return;
    }
    const ip = canonicalIp(peer);
    const plan = fe.plan;
    fe.stats.total++; // every accepted socket, refused or not
    if (fe.stats.active >= plan.maxConnections) return this.refuse(fe, sock, ip, 'over_limit', false);
    const trusted = plan.acceptProxy !== 'off' && plan.trusted.has(ip);
    if (plan.acceptProxy === 'required' && !trusted) return this.refuse(fe, sock, ip, 'untrusted_proxy', false);
    fe.stats.active++;
    const client = { address: ip, port: sock.remotePort ?? 0 };
    if (!trusted && !plan.peeks) {
      // Nothing to read before placement: route now (a server-speaks-first protocol is not delayed).
      if (!plan.admission.permits(ip)) return this.refuse(fe, sock, ip, 'denied', true);
      const p: Peeked = { client, viaProxy: false, destination: null, early: null, ended: false, sni: null, alpn: NO_ALPN, protocol: null };
      this.dispatch(fe, sock, p, plan.acceptProxy === 'optional');
      return;
    }
    const peek = new Peek(
      plan,
      sock,
      client,
      trusted,
      (p) => this.dispatch(fe, sock, p, false),
      (reason, detail, who) => {
        if (reason === 'client_closed') {
          closed(fe, { client: who.address, key: null, keySource: null, pool: null, route: null, backend: null, bytesIn: 0, bytesOut: 0, durationMs: 0, reason, detail, wasActive: true });
          return;
        }
        refused(fe, who.address, reason, detail, true);
      },
    );
    peek.start();
  }

  /** Route, key, session. `guardProxy`: accept_proxy optional, untrusted peer, no peek: the session checks the first bytes. */
  private dispatch(fe: FrontendRuntime, sock: Socket, p: Peeked, guardProxy: boolean): void {
    const plan = fe.plan;
    const limits = fe.sourceLimits;
    if (limits !== null && !limits.admit(p.client.address)) {
      sock.on('error', () => {});
      sock.destroy();
      refused(fe, p.client.address, 'over_source_limit', null, true);
      return;
    }
    let poolName = plan.pool;
    let route: string | null = null;
    if (plan.routes !== null) {
      const m = plan.routes.match({
        sni: p.sni,
        alpn: p.alpn,
        source: p.client.address,
        protocol: p.protocol,
        destinationPort: p.destination?.port ?? sock.localPort ?? 0,
      });
      if (m === null) {
        sock.on('error', () => {});
        sock.destroy();
        refused(fe, p.client.address, 'no_route', null, true);
        limits?.release(p.client.address);
        return;
      }
      poolName = m.pool;
      route = m.label;
    }
    const pool = poolName === null ? undefined : this.host.pool(poolName);
    if (pool === undefined) {
      // Only while stopping: every pool a plan names exists.
      sock.on('error', () => {});
      sock.destroy();
      refused(fe, p.client.address, 'no_route', `pool ${poolName} is gone`, true);
      limits?.release(p.client.address);
      return;
    }
    const k = affinityKey(pool.plan.key, { client: p.client.address, viaProxy: p.viaProxy, sni: p.sni });
    const host = this.host;
    const s = new Session(fe, pool, route, sock, p, k, guardProxy, host.dialer, (done) => host.sessionEnded(done));
    host.sessions.add(s);
    s.start();
  }

  private refuse(fe: FrontendRuntime, sock: Socket, ip: string, reason: 'denied' | 'over_limit' | 'untrusted_proxy', wasActive: boolean): void {
    sock.on('error', () => {}); // the refusal is what we log; a reset on the way out adds nothing
    sock.destroy();
    refused(fe, ip, reason, null, wasActive);
  }
}
