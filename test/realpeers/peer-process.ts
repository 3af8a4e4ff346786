/**
 * Shared bits of the real-peer tests (HAProxy, nginx, openssl): waiting for
 * a file that a peer creates once it has bound its sockets, without sleeps.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { LoggedProcess } from '../helpers';

/**
 * Resolves once `file` exists (watching its directory), rejects after
 * `timeoutMs` or when `proc` exits first, with its output in the message.
 */
export function waitForFile(file: string, proc: LoggedProcess, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err?: Error): void => {
      if (settled) return;
      settled = true;
      watcher.close();
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const context = (): string => `\n--- stdout:\n${proc.stdout.slice(-2000)}\n--- stderr:\n${proc.stderr.slice(-2000)}`;
    const watcher = fs.watch(path.dirname(file), () => {
      if (fs.existsSync(file)) done();
    });
    const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs}ms waiting for ${file}${context()}`)), timeoutMs);
    void proc.exited.then((e) => done(new Error(`process exited (code ${e.code}, signal ${e.signal}) before creating ${file}${context()}`)));
    if (fs.existsSync(file)) done();
  });
}

/**
 * Sends `command` to a HAProxy stats socket and resolves with the answer.
 * HAProxy answers there only from its event loop, after every listener is bound.
 */
export function haproxyCommand(socketPath: string, command: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer to ${JSON.stringify(command)} on ${socketPath} within ${timeoutMs}ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(command + '\n'));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}
