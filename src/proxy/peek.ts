/**
 * One peek (STYLE §5): the bounded, timed read before placement. It reads an
 * inbound PROXY header (from a trusted peer), then exactly what the
 * frontend's plan asks for: the protocol of the first bytes, the TLS
 * ClientHello. Every byte after the PROXY header is kept in one buffer and
 * handed to the session, which replays it to the backend unchanged. One
 * timer, from accept, covers the whole peek however the bytes are paced.
 */
import type { Socket } from 'node:net';
import type { FrontendPlan } from '../config/compile.js';
import { parseClientHello } from '../routing/hello.js';
import { MAX_HELLO } from '../routing/sni.js';
import { sniffProtocol, type Protocol } from '../routing/sniff.js';
import type { RefusedReason } from './frontend.js';
import { parseProxyHeader, signatureOf, type Endpoint } from './proxy-header.js';

export interface Peeked {
  /** The client: the socket's peer, or the address from a trusted PROXY header. */
  readonly client: Endpoint;
  /** The client address came from a PROXY header. */
  readonly viaProxy: boolean;
  /** The destination from the inbound PROXY header, if any. */
  readonly destination: Endpoint | null;
  /** Bytes received after the PROXY header: replayed to the backend. */
  readonly early: Buffer | null;
  /** The client already half-closed. */
  readonly ended: boolean;
  /** From a complete ClientHello (when the plan asked for one). */
  readonly sni: string | null;
  readonly alpn: readonly string[];
  /** When the plan asked for it. */
  readonly protocol: Protocol | null;
}

export interface PeekDone {
  (p: Peeked): void;
}
export interface PeekRefused {
  (reason: RefusedReason | 'client_closed', detail: string, client: Endpoint): void;
}

/** The most a PROXY v2 header can take (16 + 65535) plus a ClientHello: the buffer's hard bound. */
const MAX_BUFFER = 16 + 65535 + MAX_HELLO + 1024;
const NO_ALPN: readonly string[] = Object.freeze([]);

export class Peek {
  private buf: Buffer = Buffer.alloc(0);
  private phase: 'proxy' | 'bytes';
  private client: Endpoint;
  private destination: Endpoint | null = null;
  private ended = false;
  private finished = false;
  private viaProxy = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly plan: FrontendPlan,
    private readonly sock: Socket,
    peer: Endpoint,
    /** accept_proxy is on and the peer is in trusted_proxies. */
    private readonly trusted: boolean,
    private readonly done: PeekDone,
    private readonly refused: PeekRefused,
  ) {
    this.client = peer;
    this.phase = trusted ? 'proxy' : 'bytes';
    sock.on('data', this.onData);
    sock.once('end', this.onEnd);
    sock.on('error', this.onError);
    sock.once('close', this.onClose);
    this.timer = setTimeout(this.onTimeout, plan.handshakeMs);
  }

  /** Decide at once if nothing needs waiting for. */
  start(): void {
    // A peer that is not a trusted proxy is the client itself: allow/deny apply to it before anything is read.
    if (!this.trusted && !this.plan.admission.permits(this.client.address)) {
      this.refuse('denied', 'client address not allowed');
      return;
    }
    this.step();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > MAX_BUFFER) {
      this.refuse('bad_proxy_header', 'handshake bytes over the bound');
      return;
    }
    this.step();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.step(true);
  };

  private readonly onError = (): void => {
    this.refuse('client_closed', 'client error during handshake');
  };

  private readonly onClose = (): void => {
    this.refuse('client_closed', 'client closed during handshake');
  };

  private readonly onTimeout = (): void => {
    this.step(true);
  };

  /** `final`: no more bytes will come in time (timeout or end). */
  private step(final = false): void {
    if (this.finished) return;
    const plan = this.plan;
    if (this.phase === 'proxy') {
      const r = parseProxyHeader(this.buf);
      switch (r.kind) {
        case 'need-more':
          if (!final) return;
          // optional: fewer bytes than a signature (nothing, or an early "\r\n") carry no header: proceed without one
          if (plan.acceptProxy === 'optional' && signatureOf(this.buf) === 'maybe') break;
          this.refuse(this.buf.length === 0 && !this.ended ? 'handshake_timeout' : 'bad_proxy_header', 'no complete PROXY header in time');
          return;
        case 'none':
          if (plan.acceptProxy === 'required') {
            this.refuse('bad_proxy_header', 'PROXY header required');
            return;
          }
          break;
        case 'invalid':
          this.refuse('bad_proxy_header', r.reason);
          return;
        case 'header':
          if (r.source) {
            this.client = r.source;
            this.viaProxy = true;
          }
          this.destination = r.destination;
          this.buf = this.buf.subarray(r.length);
          break;
        default: {
          const never: never = r;
          throw new Error(String(never));
        }
      }
      this.phase = 'bytes';
      if (!plan.admission.permits(this.client.address)) {
        this.refuse('denied', 'client address not allowed');
        return;
      }
    } else if (!this.trusted && plan.acceptProxy === 'optional') {
      const sig = signatureOf(this.buf);
      if (sig === 1 || sig === 2) {
        this.refuse('untrusted_proxy', 'PROXY header from a peer outside trusted_proxies');
        return;
      }
      // fewer bytes than a signature: wait for more; if none come, they carry no header
      if (sig === 'maybe' && this.buf.length > 0 && !final) return;
    }
    if (!plan.peeks) return this.finish(null, NO_ALPN, null);
    let protocol: Protocol | null = null;
    if (plan.peek.protocol) {
      const p = sniffProtocol(this.buf, final);
      if (p === 'need-more') return;
      protocol = p;
    }
    if (final && this.buf.length === 0) {
      this.refuse(this.ended ? 'client_closed' : 'handshake_timeout', this.plan.peek.hello ? 'no ClientHello in time' : 'no bytes in time');
      return;
    }
    if (!plan.peek.hello || (protocol !== null && protocol !== 'tls')) return this.finish(null, NO_ALPN, protocol);
    const h = parseClientHello(this.buf);
    if (h.kind === 'need-more' && !final) return;
    if (h.kind === 'hello') return this.finish(h.name, h.alpn, protocol);
    this.finish(null, NO_ALPN, protocol);
  }

  private detach(): void {
    this.finished = true;
    clearTimeout(this.timer);
    this.sock.removeListener('data', this.onData);
    this.sock.removeListener('end', this.onEnd);
    this.sock.removeListener('error', this.onError);
    this.sock.removeListener('close', this.onClose);
  }

  private finish(sni: string | null, alpn: readonly string[], protocol: Protocol | null): void {
    this.detach();
    this.sock.pause();
    this.done({
      client: this.client,
      viaProxy: this.viaProxy,
      destination: this.destination,
      early: this.buf,
      ended: this.ended,
      sni,
      alpn,
      protocol,
    });
  }

  private refuse(reason: RefusedReason | 'client_closed', detail: string): void {
    if (this.finished) return;
    this.detach();
    this.sock.on('error', () => {}); // refused: its reason is what we log
    this.sock.destroy();
    this.refused(reason, detail, this.client);
  }
}
