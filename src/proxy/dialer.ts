/** How sessions reach backends; tests may inject a fake. */
import { connect, type Socket } from 'node:net';
import type { HostPort } from '../config/parse.js';

export class ConnectError extends Error {
  constructor(
    readonly reason: 'refused' | 'timeout' | 'reset' | 'error',
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
    return new Promise((resolve, reject) => {
      const sock = connect({ host: addr.host, port: addr.port, allowHalfOpen: true, noDelay: true, ...(onread ? { onread } : {}) });
      if (onread) (sock as Socket & { [READS_TO_CALLBACK]?: boolean })[READS_TO_CALLBACK] = true;
      const fail = (err: ConnectError) => {
        sock.destroy();
        reject(err);
      };
      sock.setTimeout(timeoutMs, () => fail(new ConnectError('timeout', `connect timeout after ${timeoutMs}ms`)));
      sock.once('error', (err: NodeJS.ErrnoException) => {
        const reason = err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'ECONNRESET' ? 'reset' : 'error';
        fail(new ConnectError(reason, err.code ?? err.message));
      });
      sock.once('connect', () => {
        sock.setTimeout(0);
        sock.removeAllListeners('error');
        sock.removeAllListeners('timeout');
        resolve(sock);
      });
    });
  },
};
