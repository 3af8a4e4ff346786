/** How sessions reach backends; tests may inject a fake. */
import { connect, type Socket } from 'node:net';
import type { HostPort } from '../config/parse.js';

/** Why a connect failed; `local`: l4lb's own resources ran out (EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL), not the backend's fault. */
export type ConnectFailure = 'refused' | 'timeout' | 'reset' | 'error' | 'local';

const LOCAL_ERRORS = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'EADDRNOTAVAIL']);

export class ConnectError extends Error {
  constructor(
    readonly reason: ConnectFailure,
    message: string,
  ) {
    super(message);
  }
}

/** Node's `onread` for a socket: reads land in `buffer`, `callback` (this: the socket) gets them, no stream events. */
export interface OnRead {
  readonly buffer: Uint8Array;
  readonly callback: (this: Socket, bytes: number, buf: Uint8Array) => boolean;
}

/** Set on a socket a dialer connected with the `onread` it was given (a dialer may ignore it). */
export const READS_TO_CALLBACK = Symbol('l4lb.readsToCallback');

export interface Dialer {
  /** A connected socket, or a ConnectError. With `onread`, its reads may go to that callback (see READS_TO_CALLBACK). */
  connect(addr: HostPort, timeoutMs: number, onread?: OnRead): Promise<Socket>;
}

export const netDialer: Dialer = {
  connect(addr, timeoutMs, onread) {
    const sock: Dialing = connect({ host: addr.host, port: addr.port, allowHalfOpen: true, noDelay: true, ...(onread ? { onread } : {}) });
    if (onread) sock[READS_TO_CALLBACK] = true;
    sock.setTimeout(timeoutMs);
    sock.on('timeout', dialTimeout);
    sock.on('error', dialError);
    sock.on('connect', dialConnected);
    return new Promise((resolve, reject) => {
      sock[PENDING] = { resolve, reject, timeoutMs };
    });
  },
};

// Shared listener functions (no closures per connection); the promise's ends ride on the socket.
interface Pending {
  resolve(s: Socket): void;
  reject(e: ConnectError): void;
  timeoutMs: number;
}
const PENDING = Symbol('l4lb.dialing');
type Dialing = Socket & { [PENDING]?: Pending | undefined; [READS_TO_CALLBACK]?: boolean };

function settle(sock: Dialing): Pending | undefined {
  const p = sock[PENDING];
  sock[PENDING] = undefined;
  sock.removeListener('timeout', dialTimeout);
  sock.removeListener('error', dialError);
  sock.removeListener('connect', dialConnected);
  return p;
}

function dialConnected(this: Dialing): void {
  this.setTimeout(0);
  settle(this)?.resolve(this);
}

function dialTimeout(this: Dialing): void {
  const p = settle(this);
  this.destroy();
  p?.reject(new ConnectError('timeout', `connect timeout after ${p.timeoutMs}ms`));
}

function dialError(this: Dialing, err: NodeJS.ErrnoException): void {
  const p = settle(this);
  this.destroy();
  const code = err.code ?? '';
  const reason: ConnectFailure = code === 'ECONNREFUSED' ? 'refused' : code === 'ECONNRESET' ? 'reset' : LOCAL_ERRORS.has(code) ? 'local' : 'error';
  p?.reject(new ConnectError(reason, err.code ?? err.message));
}
