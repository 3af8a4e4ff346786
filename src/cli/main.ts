/**
 * The command line: run | check | explain. Maps failures to exit codes:
 * 0 clean stop, 1 bad config or arguments, 2 could not bind or start.
 */
import { Command, CommanderError, Option } from 'commander';
import cluster from 'node:cluster';
import { Primary, workerCount } from '../process/primary.js';
import { SingleProcess } from '../process/single.js';
import { runWorker } from '../process/worker.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { validate } from '../config/validate.js';
import { ConfigError, L4lbError } from '../errors.js';
import { createLogger, type LogFormat } from '../log.js';
import { VERSION } from '../version.js';
import type { Protocol } from '../routing/sniff.js';
import type { AdminAction, Status } from '../admin/control.js';
import { adminTarget, call, formatStatus } from './admin-client.js';
import { explainClient, explainRing, formatClient, formatRing } from './explain.js';


interface RunOptions {
  config?: string;
  listen?: string[];
  backend?: string[];
  affinity?: string;
  ttl?: string;
  admin?: string;
  logFormat: LogFormat;
  logLevel?: string;
}

/** Quick-flag mode: one frontend `default` with backends b1..bN. */
function configFromFlags(o: RunOptions): Config {
  const input: Record<string, unknown> = {
    frontends: [
      {
        name: 'default',
        listen: o.listen ?? [],
        affinity: { key: o.affinity ?? 'source_ip' },
        ...(o.ttl ? { persistence: { ttl: o.ttl } } : {}),
        backends: (o.backend ?? []).map((address, i) => ({ name: `b${i + 1}`, address })),
      },
    ],
  };
  if (o.admin) input.admin = { listen: o.admin };
  if (!o.listen?.length) throw new L4lbError('L4LB_ERR_ARGS', '--listen: required without -c/--config');
  if (!o.backend?.length) throw new L4lbError('L4LB_ERR_ARGS', '--backend: at least one is required without -c/--config');
  const r = validate(input);
  if (r.ok) return r.config;
  const flag = (path: string) =>
    path
      .replace(/^frontends\[0\]\.listen\[(\d+)\]/, '--listen #$1')
      .replace(/^frontends\[0\]\.backends\[(\d+)\]\.address/, (_m, i: string) => `--backend #${Number(i) + 1}`)
      .replace(/^frontends\[0\]\.affinity\.key/, '--affinity')
      .replace(/^frontends\[0\]\.persistence\.ttl/, '--ttl')
      .replace(/^admin\.listen/, '--admin');
  throw new ConfigError(r.errors.map((e) => ({ path: flag(e.path), message: e.message })));
}

async function run(o: RunOptions): Promise<number> {
  if (cluster.isWorker) {
    runWorker(o.logFormat, o.logLevel); // the primary sends the config; the worker exits by itself
    return new Promise<number>(() => {});
  }
  const config = o.config ? loadConfig(o.config) : configFromFlags(o);
  const log = createLogger(o.logLevel ?? config.log.level, o.logFormat);
  // A bug must not look like a bad config: exit 70 (EX_SOFTWARE), which systemd restarts, not 1.
  const crash = (what: string) => (err: unknown) => {
    log.fatal({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, what);
    process.exit(70);
  };
  process.on('uncaughtException', crash('uncaught exception: exiting'));
  process.on('unhandledRejection', crash('unhandled rejection: exiting'));
  const n = workerCount(config);
  const app: { start(): Promise<void>; reload(c: typeof config): Promise<void>; stop(): Promise<void> } = n > 1 ? new Primary(config, log, n) : new SingleProcess(config, log);
  try {
    await app.start();
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'could not start');
    return 2;
  }
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      if (!o.config) {
        log.warn('reload ignored: running from command-line flags, not a config file');
        return;
      }
      try {
        const next = loadConfig(o.config);
        await app.reload(next);
        log.info({ config: o.config }, 'reloaded'); // under the level in force when SIGHUP came
        if (o.logLevel === undefined) log.level = next.log.level; // --log-level wins over the file
      } catch (err) {
        const errors = err instanceof ConfigError ? err.issues.map((i) => `${i.path}: ${i.message}`) : [(err as Error).message];
        log.error({ config: o.config, errors }, 'reload failed');
      }
    });
  });
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping');
      void app.stop().then(() => {
        log.info('stopped');
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

function check(file: string): number {
  loadConfig(file);
  process.stdout.write('config ok\n');
  return 0;
}

interface ExplainOptions {
  config: string;
  client?: string;
  sni?: string;
  alpn?: string[];
  port?: string;
  protocol?: Protocol;
  frontend?: string;
  pool?: string;
  ring?: boolean;
  json?: boolean;
}

function explain(o: ExplainOptions): number {
  const config = loadConfig(o.config);
  if (o.ring) {
    const r = explainRing(config, o.pool, o.frontend);
    const out = o.json ? JSON.stringify({ frontend: r.frontend, pool: r.pool, backends: r.backends.map((b) => ({ name: b.name, share: b.share })), points: r.points }) : formatRing(r);
    process.stdout.write(out + '\n');
    return 0;
  }
  if (!o.client) throw new L4lbError('L4LB_ERR_ARGS', '--client: required (or --ring)');
  let port: number | undefined;
  if (o.port !== undefined) {
    port = Number(o.port);
    if (!/^\d{1,5}$/.test(o.port) || port < 1 || port > 65535) throw new L4lbError('L4LB_ERR_ARGS', `--port: "${o.port}" is not a port (1..65535)`);
  }
  const e = explainClient(config, { client: o.client, ...(o.sni !== undefined ? { sni: o.sni } : {}), ...(o.alpn ? { alpn: o.alpn } : {}), ...(port !== undefined ? { port } : {}), ...(o.protocol ? { protocol: o.protocol } : {}) }, o.frontend);
  process.stdout.write((o.json ? JSON.stringify(e) : formatClient(e)) + '\n');
  return 0;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

interface AdminOpts {
  admin?: string;
  config?: string;
  token?: string;
  json?: boolean;
}

async function status(o: AdminOpts): Promise<number> {
  const r = await call(adminTarget(o), 'GET', '/status');
  if (r.status !== 200) throw new L4lbError('L4LB_ERR_ARGS', `admin API answered ${r.status}: ${JSON.stringify(r.body)}`);
  process.stdout.write(o.json ? JSON.stringify(r.body) + '\n' : formatStatus(r.body as Status));
  return 0;
}

async function forget(fe: string, o: AdminOpts & { key?: string; backend?: string; all?: boolean }): Promise<number> {
  const given = [o.key !== undefined, o.backend !== undefined, o.all === true].filter(Boolean).length;
  if (given !== 1) throw new L4lbError('L4LB_ERR_ARGS', 'forget: give exactly one of --key, --backend, --all');
  const q = o.key !== undefined ? `?key=${encodeURIComponent(o.key)}` : o.backend !== undefined ? `?backend=${encodeURIComponent(o.backend)}` : '';
  const r = await call(adminTarget(o), 'DELETE', `/persistence/${encodeURIComponent(fe)}${q}`);
  if (r.status !== 200) {
    process.stderr.write(`forget: ${(r.body as { error?: string }).error ?? JSON.stringify(r.body)} (HTTP ${r.status})\n`);
    return 1;
  }
  process.stdout.write(`${fe}: forgot ${(r.body as { deleted: number }).deleted} entries\n`);
  return 0;
}

async function setMode(action: AdminAction, target: string, o: AdminOpts): Promise<number> {
  const m = /^([^/]+)\/([^/]+)$/.exec(target);
  if (!m) throw new L4lbError('L4LB_ERR_ARGS', `expected POOL/BACKEND, got "${target}"`);
  const r = await call(adminTarget(o), 'POST', `/backends/${encodeURIComponent(m[1]!)}/${encodeURIComponent(m[2]!)}/${action}`);
  if (r.status !== 200) {
    process.stderr.write(`${action} ${target}: ${(r.body as { error?: string }).error ?? JSON.stringify(r.body)} (HTTP ${r.status})\n`);
    return 1;
  }
  const b = r.body as { name: string; state: string };
  process.stdout.write(`${m[1]}/${b.name}: ${b.state}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let result: Promise<number> | number = 0;
  const program = new Command('l4lb')
    .description('Layer-4 TCP/TLS load balancer with session persistence')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const runOpts = (cmd: Command) =>
    cmd
      .option('-c, --config <file>', 'config file (YAML, or JSON by .json extension)')
      .option('--listen <host:port>', 'quick mode: address to listen on (repeatable)', collect)
      .option('--backend <host:port>', 'quick mode: a backend (repeatable)', collect)
      .addOption(new Option('--affinity <key>', 'quick mode: affinity key').choices(['source_ip', 'none']))
      .option('--ttl <duration>', 'quick mode: persistence ttl, e.g. 30m')
      .option('--admin <host:port>', 'quick mode: admin listener')
      .addOption(new Option('--log-format <format>', 'log format').choices(['json', 'pretty']).default('json'))
      .addOption(new Option('--log-level <level>', 'override log.level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']));

  runOpts(program.command('run').description('run the load balancer (the default command)')).action((o: RunOptions) => {
    result = run(o);
  });
  program
    .command('check')
    .description('validate a config file: exit 0 "config ok", else 1 and every error with its path')
    .requiredOption('-c, --config <file>', 'config file')
    .action((o: { config: string }) => {
      result = check(o.config);
    });
  program
    .command('explain')
    .description('where would this client go, and why; or --ring: each backend\'s exact share of the ring')
    .requiredOption('-c, --config <file>', 'config file')
    .option('--client <ip>', 'client address')
    .option('--sni <name>', 'TLS server name the client sends')
    .option('--alpn <protocol>', 'an ALPN protocol the client offers (repeatable)', collect)
    .option('--port <port>', 'the port the client connects to (destination_port routes)')
    .addOption(new Option('--protocol <protocol>', 'the protocol of its first bytes (default: tls with --sni/--alpn, else other)').choices(['tls', 'ssh', 'http', 'other']))
    .option('--frontend <name>', 'frontend (default: the first)')
    .option('--pool <name>', 'with --ring: the pool (default: the frontend\'s, when it has one)')
    .option('--ring', "print each backend's exact share of the ring")
    .option('--json', 'machine-readable output')
    .action((o) => {
      result = explain(o);
    });
  const adminOpts = (cmd: Command) =>
    cmd
      .option('--admin <host:port>', 'admin API address (default: from -c, else 127.0.0.1:9100)')
      .option('-c, --config <file>', 'read the admin address and token from this config')
      .option('--token <token>', 'bearer token (default: $L4LB_ADMIN_TOKEN, else from -c)');
  adminOpts(program.command('status').description('show frontends and backends of a running l4lb'))
    .option('--json', 'print the raw /status JSON')
    .action((o: AdminOpts) => {
      result = status(o);
    });
  for (const action of ['drain', 'disable', 'enable'] as const) {
    const what = { drain: 'no new keys; existing keys stay until they expire', disable: 'no connections; its keys move', enable: 'back to normal' }[action];
    adminOpts(program.command(`${action} <frontend/backend>`).description(`${action} a backend (${what})`)).action((target: string, o: AdminOpts) => {
      result = setMode(action, target, o);
    });
  }
  adminOpts(program.command('forget <pool>').description("forget persistence entries: one key, one backend's, or all"))
    .option('--key <key>', 'one key, e.g. ip:10.1.2.3')
    .option('--backend <name>', "every entry on this backend")
    .option('--all', 'every entry of the pool')
    .action((fe: string, o: AdminOpts & { key?: string; backend?: string; all?: boolean }) => {
      result = forget(fe, o);
    });
  // `l4lb -c FILE` means `l4lb run -c FILE`.
  const args = argv.slice(2);
  const first = args[0];
  if (first === undefined) {
    // No arguments: the usage, not a run with nothing to run (exit 1, as for any other missing argument).
    process.stderr.write(program.helpInformation());
    return 1;
  }
  if (first.startsWith('-') && !['-h', '--help', '-V', '--version'].includes(first)) args.unshift('run');
  try {
    await program.parseAsync(args, { from: 'user' });
    return await result;
  } catch (err) {
    return report(err);
  }
}

function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1;
  if (err instanceof ConfigError) {
    for (const i of err.issues) process.stderr.write(`${i.path}: ${i.message}\n`);
    return 1;
  }
  if (err instanceof L4lbError) {
    process.stderr.write(`${err.message}\n`);
    return err.code === 'L4LB_ERR_BIND' ? 2 : 1;
  }
  process.stderr.write(`l4lb: ${(err as Error).stack ?? String(err)}\n`);
  return 2;
}
