/** allow / deny lists, compiled once per frontend into node:net BlockLists. */
import { BlockList } from 'node:net';
import { parseCidr } from '../config/parse.js';

export class AddressMatcher {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    this.empty = cidrs.length === 0;
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (typeof c === 'string') throw new Error(c); // validated before; unreachable
      this.list.addSubnet(c[0].toString(), c[1], c[0].kind());
    }
  }

  /** `ip` is canonical (mapped IPv6 already folded to IPv4). */
  has(ip: string): boolean {
    return this.list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  }
}

export class Admission {
  private readonly allow: AddressMatcher;
  private readonly deny: AddressMatcher;

  constructor(allow: readonly string[], deny: readonly string[]) {
    this.allow = new AddressMatcher(allow);
    this.deny = new AddressMatcher(deny);
  }

  /** Everyone passes an empty allow list; deny wins over allow. */
  permits(ip: string): boolean {
    if (!this.allow.empty && !this.allow.has(ip)) return false;
    return this.deny.empty || !this.deny.has(ip);
  }
}
