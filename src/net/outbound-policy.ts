import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';
import { AppError } from '../errors.ts';

/**
 * Where the server may connect on a tenant's behalf. Every outbound
 * connection whose target a tenant chooses (git remotes today; webhooks and
 * the like tomorrow) asks this one policy first, with the URL as given:
 *
 * - the scheme must be one the operator enabled (git: `https` by default);
 * - no credentials in the URL, and only the scheme's default port;
 * - the host is resolved (every address, as the system resolver answers) and
 *   each address must be public unicast: loopback, private (RFC 1918, ULA
 *   fc00::/7), carrier-grade NAT (100.64/10), link-local (169.254/16 — cloud
 *   metadata — and fe80::/10), multicast, broadcast, unspecified, reserved and
 *   documentation ranges, and IPv6 forms that embed an IPv4 address
 *   (IPv4-mapped, NAT64, 6to4, Teredo) are refused. One bad address refuses
 *   the host: the connection could go to any of them;
 * - an operator-listed host (`host` or `host:port`) skips the address check
 *   and may use the listed port; `allowPrivate` lets every host reach
 *   loopback, private, ULA and CGNAT addresses (never link-local: list the
 *   host for that).
 *
 * The caller connects to the addresses checked here (see `CheckedTarget`),
 * not to a second resolution of the name, so a short-TTL DNS answer cannot
 * swap a public address for a private one in between (DNS rebinding).
 * Operator-set endpoints (embedding, LLM, reranker, OTLP) do not pass here.
 */
export interface OutboundPolicyOptions {
  /** Schemes allowed, without the colon (`https`, `http`, `ssh`, `git`). */
  readonly protocols: readonly string[];
  /** `host` or `host:port` entries (IPv6 in brackets) the operator trusts. */
  readonly allowedHosts: readonly string[];
  /** Let any host resolve to loopback, private, ULA or CGNAT addresses. */
  readonly allowPrivate: boolean;
  /** Resolves a host name to its addresses; the system resolver by default (tests inject answers). */
  readonly resolve?: ((host: string) => Promise<readonly string[]>) | undefined;
}

/** A URL that passed the policy, with the addresses it was checked against: connect to these. */
export interface CheckedTarget {
  readonly url: URL;
  /** The host name without IPv6 brackets, lowercase. */
  readonly host: string;
  /** The port the connection will use (the scheme's default unless an allowed host names another). */
  readonly port: number;
  /** Every address the host resolved to, each one checked. */
  readonly addresses: readonly string[];
}

/** Why a URL was refused; `address` also covers a host that does not resolve (no DNS oracle). */
export type OutboundRefusal = 'scheme' | 'credentials' | 'host' | 'port' | 'address';

const DEFAULT_PORTS: Readonly<Record<string, number>> = { https: 443, http: 80, ssh: 22, git: 9418 };

/** Ranges `allowPrivate` opens; link-local (metadata services) stays closed. */
const PRIVATE_RANGES: ReadonlySet<string> = new Set(['loopback', 'private', 'uniqueLocal', 'carrierGradeNat']);

/** A DNS name: letters, digits, hyphens and dots (non-special URL schemes do not normalise hosts). */
const HOST_NAME_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?$/;

const MESSAGES: Readonly<Record<OutboundRefusal, string>> = {
  scheme: 'This URL scheme is not enabled on this server',
  credentials: 'Do not put credentials in the URL',
  host: 'The URL does not name a valid host',
  port: 'Only the default port of the scheme is allowed',
  address: 'The host is not reachable under this server’s outbound policy: it must resolve to public addresses only',
};

/** The error every refusal throws: 400 `URL_NOT_ALLOWED`, with the reason in `details`. */
export const urlNotAllowed = (reason: OutboundRefusal, extra: Record<string, unknown> = {}): AppError =>
  new AppError('URL_NOT_ALLOWED', MESSAGES[reason], { details: { reason, ...extra } });

const stripBrackets = (host: string): string => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);

/** Whether an address is public unicast (or, with `allowPrivate`, in a private range). */
export function isAllowedAddress(address: string, allowPrivate: boolean): boolean {
  if (!ipaddr.isValid(address)) return false;
  // process(): an IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address it is.
  const range = ipaddr.process(address).range();
  return range === 'unicast' || (allowPrivate && PRIVATE_RANGES.has(range));
}

const systemResolve = async (host: string): Promise<readonly string[]> =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export class OutboundPolicy {
  private readonly protocols: ReadonlySet<string>;
  /** `host` → the ports allowed for it (undefined: the default port). */
  private readonly allowed = new Map<string, Set<number | undefined>>();
  private readonly resolve: (host: string) => Promise<readonly string[]>;

  constructor(private readonly opts: OutboundPolicyOptions) {
    this.protocols = new Set(opts.protocols.map((p) => p.toLowerCase().replace(/:$/, '')));
    for (const entry of opts.allowedHosts) {
      const { host, port } = parseHostEntry(entry);
      const ports = this.allowed.get(host) ?? new Set();
      ports.add(port);
      this.allowed.set(host, ports);
    }
    this.resolve = opts.resolve ?? systemResolve;
  }

  /** Whether a scheme (without the colon) is enabled. */
  allowsProtocol(protocol: string): boolean {
    return this.protocols.has(protocol);
  }

  /**
   * Checks a URL and resolves its host; throws `URL_NOT_ALLOWED` before any
   * connection is made when the policy refuses it.
   */
  async check(raw: string | URL): Promise<CheckedTarget> {
    let url: URL;
    try {
      url = typeof raw === 'string' ? new URL(raw) : new URL(raw.href);
    } catch {
      throw urlNotAllowed('host');
    }
    const protocol = url.protocol.replace(/:$/, '');
    const defaultPort = DEFAULT_PORTS[protocol];
    if (!this.protocols.has(protocol) || defaultPort === undefined) throw urlNotAllowed('scheme', { scheme: protocol });
    if (url.password !== '') throw urlNotAllowed('credentials');
    const host = stripBrackets(url.hostname.toLowerCase());
    if (host === '' || !(ipaddr.isValid(host) || HOST_NAME_RE.test(host))) throw urlNotAllowed('host');
    // Special schemes (http, https) drop a default port from `url.port`; ssh and git keep what was written.
    const port = url.port === '' ? defaultPort : Number(url.port);
    // An entry trusts its host on the port it names, or on the default port when it names none.
    const ports = this.allowed.get(host);
    const listed = ports !== undefined && (ports.has(port) || (port === defaultPort && ports.has(undefined)));
    if (port !== defaultPort && !listed) throw urlNotAllowed('port', { port });

    let addresses: readonly string[];
    try {
      addresses = ipaddr.isValid(host) ? [ipaddr.parse(host).toString()] : await this.resolve(host);
    } catch {
      throw urlNotAllowed('address');
    }
    if (addresses.length === 0) throw urlNotAllowed('address');
    if (!listed && !addresses.every((a) => isAllowedAddress(a, this.opts.allowPrivate))) {
      throw urlNotAllowed('address');
    }
    return { url, host, port, addresses };
  }
}

/**
 * One CODE_GIT_ALLOWED_HOSTS entry: `host`, `host:port`, `[v6]` or `[v6]:port`,
 * normalised as a URL would normalise it (so `0x7f000001` is `127.0.0.1`).
 */
export function parseHostEntry(entry: string): { host: string; port: number | undefined } {
  let url: URL;
  try {
    url = new URL(`https://${entry.trim()}`);
  } catch {
    throw new Error(`not a host or host:port: ${entry}`);
  }
  if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.hostname === '') {
    throw new Error(`not a host or host:port: ${entry}`);
  }
  // `https://h:443` drops the port: an explicit 443 is https' default anyway.
  const explicit = /:(\d+)$/.exec(entry.trim())?.[1];
  return {
    host: stripBrackets(url.hostname.toLowerCase()),
    port: explicit === undefined ? undefined : Number(explicit),
  };
}
