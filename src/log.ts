/** The pino factory: JSON lines on stdout, or `pretty` for people. */
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

export function createLogger(level: string, format: LogFormat = 'json', destination?: DestinationStream): Logger {
  const opts = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (destination) return pino(opts, destination);
  if (format === 'pretty') return pino(opts, (require('pino-pretty') as typeof import('pino-pretty'))({ colorize: process.stdout.isTTY, sync: true, singleLine: true, ignore: 'pid,hostname' }));
  return pino(opts, pino.destination({ dest: 1, sync: true }));
}
