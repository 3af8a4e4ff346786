/**
 * The bounded, timed peek before routing: an inbound PROXY header (from a
 * trusted peer) and, for `affinity.key: sni`, the TLS ClientHello. Bytes
 * are buffered, never lost: what follows the PROXY header is handed to the
 * session to replay to the backend. One timer covers the whole handshake.
 */
import type { Socket } from 'node:net';
import type { FrontendRuntime, RefusedReason } from '../runtime.js';
import { sniKey, sourceIpKey } from '../routing/affinity.js';
import { MAX_HELLO, parseSni } from '../routing/sni.js';
import { parseProxyHeader, signatureOf, type Endpoint } from './proxy-header.js';
import type { KeySource } from './session.js';

export interface Peeked {
  readonly client: Endpoint;
  /** From the inbound PROXY header, when it carried one. */
  readonly destination: Endpoint | null;
  readonly key: string | null;
  readonly keySource: KeySource;
  /** Bytes received after the PROXY header: replayed to the backend. */
  readonly early: Buffer;
  /** The client already half-closed. */
  readonly ended: boolean;
}

export interface HandshakeDone {
  (p: Peeked): void;
}
export interface HandshakeRefused {
  (reason: RefusedReason | 'client_closed', detail: string, client: Endpoint): void;
}

/** The most a PROXY v2 header can take (16 + 65535) plus a ClientHello: the buffer's hard bound. */
const MAX_BUFFER = 16 + 65535 + MAX_HELLO + 1024;

export class Handshake {
  private buf: Buffer = Buffer.alloc(0);
  private phase: 'proxy' | 'sni' = 'proxy';
  private client: Endpoint;
  private destination: Endpoint | null = null;
  private ended = false;
  private finished = false;
  /** The client address came from a PROXY header. */
  private viaProxy = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly rt: FrontendRuntime,
    private readonly sock: Socket,
    peer: Endpoint,
    /** accept_proxy is on and the peer is in trusted_proxies. */
    private readonly trusted: boolean,
    private readonly done: HandshakeDone,
    private readonly refused: HandshakeRefused,
  ) {
    this.client = peer;
    if (!trusted) this.phase = 'sni';
    sock.on('data', this.onData);
    sock.once('end', this.onEnd);
    sock.on('error', this.onError);
    sock.once('close', this.onClose);
    this.timer = setTimeout(this.onTimeout, rt.config.timeouts.handshake);
  }

  /** Decide at once if nothing needs waiting for (e.g. optional mode with a fast client). */
  start(): void {
    // A peer that is not a trusted proxy is the client itself: allow/deny apply to it before anything is read.
    if (!this.trusted && !this.rt.admission.permits(this.client.address)) {
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
    const fe = this.rt.config;
    if (this.phase === 'proxy') {
      const r = parseProxyHeader(this.buf);
      switch (r.kind) {
        case 'need-more':
          if (!final) return;
          // optional: fewer bytes than a signature (nothing, or an early "\r\n") carry no header: proceed without one
          if (fe.accept_proxy === 'optional' && signatureOf(this.buf) === 'maybe') break;
          this.refuse(this.buf.length === 0 && !this.ended ? 'handshake_timeout' : 'bad_proxy_header', 'no complete PROXY header in time');
          return;
        case 'none':
          if (fe.accept_proxy === 'required') {
            this.refuse('bad_proxy_header', 'PROXY header required');
            return;
          }
          break;
        case 'invalid':
          this.refuse('bad_proxy_header', r.reason);
          return;
        case 'header':
          if (r.source) ((this.client = r.source), (this.viaProxy = true));
          this.destination = r.destination;
          this.buf = this.buf.subarray(r.length);
          break;
        default: {
          const never: never = r;
          throw new Error(String(never));
        }
      }
      this.phase = 'sni';
      if (!this.rt.admission.permits(this.client.address)) {
        this.refuse('denied', 'client address not allowed');
        return;
      }
    } else if (!this.trusted && fe.accept_proxy === 'optional') {
      const sig = signatureOf(this.buf);
      if (sig === 1 || sig === 2) {
        this.refuse('untrusted_proxy', 'PROXY header from a peer outside trusted_proxies');
        return;
      }
      // fewer bytes than a signature: wait for more; if none come, they carry no header
      if (sig === 'maybe' && this.buf.length > 0 && !final) return;
    }
    // phase sni (or no SNI needed)
    if (fe.affinity.key !== 'sni') return this.finish(this.sourceKey(), this.viaProxy ? 'proxy' : 'socket');
    const s = parseSni(this.buf);
    if (s.kind === 'need-more') {
      if (!final) return;
      if (this.buf.length === 0) {
        this.refuse(this.ended ? 'client_closed' : 'handshake_timeout', 'no ClientHello in time');
        return;
      }
      return this.finish(this.fallbackKey(), 'fallback');
    }
    if (s.kind === 'name') return this.finish(sniKey(s.name), 'sni');
    this.finish(this.fallbackKey(), 'fallback');
  }

  private sourceKey(): string | null {
    const fe = this.rt.config;
    return fe.affinity.key === 'none' ? null : sourceIpKey(this.client.address, fe.affinity);
  }

  private fallbackKey(): string | null {
    const fe = this.rt.config;
    return fe.affinity.fallback === 'none' ? null : sourceIpKey(this.client.address, fe.affinity);
  }

  private detach(): void {
    this.finished = true;
    clearTimeout(this.timer);
    this.sock.removeListener('data', this.onData);
    this.sock.removeListener('end', this.onEnd);
    this.sock.removeListener('error', this.onError);
    this.sock.removeListener('close', this.onClose);
  }

  private finish(key: string | null, keySource: KeySource): void {
    this.detach();
    this.sock.pause();
    this.done({ client: this.client, destination: this.destination, key, keySource, early: this.buf, ended: this.ended });
  }

  private refuse(reason: RefusedReason | 'client_closed', detail: string): void {
    if (this.finished) return;
    this.detach();
    this.sock.on('error', () => {}); // refused: its reason is what we log
    this.sock.destroy();
    this.refused(reason, detail, this.client);
  }
}
