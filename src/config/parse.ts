/** Small value parsers shared by the schema: durations, host:port, CIDR, IP. */
import ipaddr from 'ipaddr.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** '500ms' | '2s' | '30m' | '1h' | '1h30m' → milliseconds, or an error message. */
export function parseDuration(text: string): number | string {
  const s = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(s)) {
    return `invalid duration "${text}" (expected e.g. 500ms, 2s, 30m, 1h)`;
  }
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) {
    total += Number(m[1]) * (UNITS[m[2]!] ?? 0);
  }
  return Math.round(total);
}

export interface HostPort {
  readonly host: string; // bare, no brackets
  readonly port: number;
  readonly family: 4 | 6;
}

/** '127.0.0.1:7000' | '[::1]:7000' → HostPort, or an error message. Hosts must be IP literals. */
export function parseHostPort(text: string): HostPort | string {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return `invalid address "${text}" (expected host:port or [v6]:port)`;
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return `invalid port ${port} in "${text}" (0..65535)`;
  if (!isIpLiteral(host)) {
    if (host === 'localhost') return { host: '127.0.0.1', port, family: 4 };
    return `invalid address "${text}": host must be an IP literal`;
  }
  const addr = ipaddr.parse(host);
  return { host: addr.toString(), port, family: addr.kind() === 'ipv6' ? 6 : 4 };
}

export function formatHostPort(hp: { host: string; port: number }): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * IPv6, or IPv4 in four-part decimal. ipaddr.js alone also accepts `10.1` (10.0.0.1),
 * `1234` (0.0.4.210) and `010.1.2.3` (octal: 8.1.2.3), so a typo would silently mean another address.
 */
function isIpLiteral(text: string): boolean {
  return ipaddr.IPv6.isValid(text) || ipaddr.IPv4.isValidFourPartDecimal(text);
}

export type Cidr = readonly [ipaddr.IPv4 | ipaddr.IPv6, number];

/** '10.0.0.0/8' | '::1/128' | '10.1.2.3' (a single host) → parsed CIDR, or an error message. */
export function parseCidr(text: string): Cidr | string {
  try {
    if (!isIpLiteral(text.split('/', 1)[0]!)) throw new Error('not an IP literal');
    if (text.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(text);
      return [addr, bits];
    }
    const addr = ipaddr.parse(text);
    return [addr, addr.kind() === 'ipv6' ? 128 : 32];
  } catch {
    return `invalid CIDR "${text}"`;
  }
}
