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

export interface Dialer {
  /** A connected socket, or a ConnectError. */
  connect(addr: HostPort, timeoutMs: number): Promise<Socket>;
}

export const netDialer: Dialer = {
  connect(addr, timeoutMs) {
    return new Promise((resolve, reject) => {
      const sock = connect({ host: addr.host, port: addr.port, allowHalfOpen: true, noDelay: true });
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
