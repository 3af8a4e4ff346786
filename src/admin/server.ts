/**
 * The admin HTTP API (SPEC §4) on node:http. It talks only to a Control.
 * Mutating calls need `Authorization: Bearer <token>` when a token is set;
 * GET calls (and the status page) are open.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AdminAction, Control } from './control.js';
import { statusPage } from './page.js';
import type { Metrics } from '../metrics/registry.js';
import type { Logger } from '../log.js';
import { BindError } from '../errors.js';

export interface AdminOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string | null;
}

export class AdminServer {
  private readonly server: Server;
  port = 0;

  constructor(
    private readonly opts: AdminOptions,
    private readonly control: Control,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.server = createServer(
      {
        // A client that has not sent a complete request within 10 s is closed (Node checks every second).
        headersTimeout: REQUEST_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        connectionsCheckingInterval: 1000,
        keepAliveTimeout: 5000,
      },
      (req, res) => {
        this.serve(req, res).catch((err: Error) => {
          this.log.error({ err: err.message, url: req.url }, 'admin request failed');
          if (!res.headersSent) json(res, 500, { error: 'internal error' });
          else res.destroy();
        });
      },
    );
    // More concurrent connections than this are closed at accept: the admin API is for a few operators and scrapers.
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.on('clientError', (err: NodeJS.ErrnoException, sock) => {
      // Bad request lines, timeouts, oversized headers: answer if the socket still can, never log per client at error.
      if (sock.writable && !sock.destroyed) sock.end(err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      sock.destroy();
    });
  }

  /** Read the body (bounded), then answer; a malformed URL is the client's error, not ours. */
  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY) return tooLarge(req, res);
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) {
      const body = await readBody(req, MAX_BODY);
      if (body === 'aborted') {
        req.socket.destroy(); // the client left (or timed out) mid-body: nothing to answer, nothing to log
        return;
      }
      if (body === null) return tooLarge(req, res);
    }
    let url: URL;
    let parts: string[];
    try {
      url = new URL(req.url ?? '/', 'http://admin');
      parts = (url.pathname.replace(/\/+$/, '') || '/').split('/').slice(1).map(decodeURIComponent);
      // URLSearchParams decodes leniently (a bad %XX stays as text, a cut UTF-8 sequence becomes U+FFFD): check strictly.
      for (const pair of url.search.slice(1).split('&')) if (pair !== '') decodeURIComponent(pair.replace(/\+/g, ' '));
    } catch {
      return json(res, 400, { error: 'malformed URL encoding' });
    }
    return this.handle(req, res, url, parts);
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err: NodeJS.ErrnoException) => reject(new BindError(`cannot listen on admin ${this.opts.host}:${this.opts.port}: ${err.code ?? err.message}`)));
      this.server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        const a = this.server.address();
        this.port = typeof a === 'object' && a ? a.port : this.opts.port;
        this.log.info({ address: this.opts.host, port: this.port }, 'admin listening');
        resolve(this.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private authorized(req: IncomingMessage): boolean {
    const token = this.opts.token;
    if (token === null) return true;
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private async handle(req: IncomingMessage, res: ServerResponse, url: URL, parts: readonly string[]): Promise<void> {
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    const c = this.control;

    if (method === 'GET' && path === '/healthz') {
      const ok = c.accepting();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'stopping\n');
      return;
    }
    if (method === 'GET' && path === '/metrics') {
      const text = await this.metrics.render(await c.status());
      res.writeHead(200, { 'content-type': this.metrics.contentType }).end(text);
      return;
    }
    if (method === 'GET' && path === '/status') return json(res, 200, await c.status());
    if (method === 'GET' && path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(statusPage(await c.status()));
      return;
    }
    if (parts[0] === 'persistence' && parts.length === 2) {
      const fe = parts[1]!;
      const key = url.searchParams.get('key') ?? undefined;
      const backend = url.searchParams.get('backend') ?? undefined;
      if (method === 'GET') {
        const r = c.entries(fe, key);
        if (!r.ok) return json(res, 404, { error: r.error });
        return json(res, 200, {
          entries: r.value.map((e) => ({ key: e.key, backend: e.backend, expires_at: e.expiresAt === null ? null : new Date(e.expiresAt).toISOString(), connections: e.connections })),
        });
      }
      if (method === 'DELETE') {
        if (!this.authorized(req)) return json(res, 401, { error: 'missing or wrong bearer token' });
        if (key !== undefined && backend !== undefined) return json(res, 400, { error: 'give key or backend, not both' });
        const r = c.forget(fe, { key, backend });
        if (!r.ok) return json(res, 404, { error: r.error });
        return json(res, 200, { deleted: r.value });
      }
      return json(res, 405, { error: `${method} not allowed on ${path}` });
    }
    if (parts[0] === 'backends' && parts.length === 4) {
      if (method !== 'POST') return json(res, 405, { error: `${method} not allowed on ${path}` });
      const action = parts[3]!;
      if (!isAction(action)) return json(res, 400, { error: `unknown action "${action}" (drain, disable, enable)` });
      if (!this.authorized(req)) return json(res, 401, { error: 'missing or wrong bearer token' });
      const r = c.setMode(parts[1]!, parts[2]!, action);
      if (!r.ok) return json(res, 404, { error: r.error });
      this.log.info({ pool: parts[1], backend: parts[2], action }, 'backend mode changed');
      return json(res, 200, r.value);
    }
    return json(res, 404, { error: `no route ${method} ${path}` });
  }
}

/** Request bodies are capped: nothing an admin client sends may cost the data plane (SPEC §14). */
export const MAX_BODY = 64 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 64;

/** The body, null past `max` bytes (reading stops there), or 'aborted' when the client went away mid-body. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | null | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (c: Buffer) => {
      n += c.length;
      if (n > max) {
        req.removeListener('data', onData);
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', () => resolve('aborted'));
  });
}

/** 413, then close the connection: the rest of the body is never read. */
function tooLarge(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify({ error: `request body over ${MAX_BODY} bytes` }) + '\n', () => req.socket.destroy());
}

function isAction(a: string): a is AdminAction {
  return a === 'drain' || a === 'disable' || a === 'enable';
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
}
