import { describe, expect, it } from 'vitest';
import { isAppError } from '../errors.ts';
import { isAllowedAddress, OutboundPolicy, parseHostEntry, type OutboundPolicyOptions } from './outbound-policy.ts';

/** A resolver that answers from a table and records every name it was asked: no test touches real DNS. */
const fakeDns = (table: Record<string, readonly string[]>) => {
  const asked: string[] = [];
  return {
    asked,
    resolve: async (host: string): Promise<readonly string[]> => {
      asked.push(host);
      const found = table[host];
      if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return found;
    },
  };
};

const policy = (dns: ReturnType<typeof fakeDns>, opts: Partial<OutboundPolicyOptions> = {}) =>
  new OutboundPolicy({ protocols: ['https'], allowedHosts: [], allowPrivate: false, resolve: dns.resolve, ...opts });

const refusal = async (p: OutboundPolicy, url: string): Promise<unknown> => {
  const e = await p.check(url).then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!isAppError(e)) return e;
  return [e.code, (e.details as { reason: string }).reason];
};

describe(OutboundPolicy.name, () => {
  describe('check', () => {
    const dns = fakeDns({
      'git.example.com': ['140.82.112.3', '2606:50c0:8000::153'],
      'rebind.example.com': ['140.82.112.3', '10.0.0.5'],
      'meta.example.com': ['169.254.169.254'],
      'mapped.example.com': ['::ffff:192.168.1.1'],
      'nat64.example.com': ['64:ff9b::a00:1'],
      'empty.example.com': [],
      'git.corp': ['10.1.2.3'],
      localhost: ['127.0.0.1', '::1'],
    });

    it('passes a public host and returns every address it resolved to, for the caller to connect to', async () => {
      const target = await policy(dns).check('https://git.example.com/org/repo.git');
      expect(target).toMatchObject({
        host: 'git.example.com',
        port: 443,
        addresses: ['140.82.112.3', '2606:50c0:8000::153'],
      });
    });

    it.each([
      ['loopback', 'https://127.0.0.1/x.git'],
      ['IPv6 loopback', 'https://[::1]/x'],
      ['a hex IPv4 literal', 'https://0x7f000001/x'],
      ['a decimal IPv4 literal', 'https://2130706433/x'],
      ['an octal IPv4 literal', 'https://0177.0.0.1/x'],
      ['link-local (cloud metadata)', 'https://169.254.169.254/latest/meta-data'],
      ['RFC 1918 10/8', 'https://10.0.0.1/x'],
      ['RFC 1918 172.16/12', 'https://172.31.255.255/x'],
      ['RFC 1918 192.168/16', 'https://192.168.1.1/x'],
      ['CGNAT', 'https://100.64.0.1/x'],
      ['unspecified', 'https://0.0.0.0/x'],
      ['IPv6 unspecified', 'https://[::]/x'],
      ['multicast', 'https://224.0.0.1/x'],
      ['IPv6 multicast', 'https://[ff02::1]/x'],
      ['broadcast', 'https://255.255.255.255/x'],
      ['documentation', 'https://192.0.2.1/x'],
      ['ULA', 'https://[fd12:3456::1]/x'],
      ['IPv6 link-local', 'https://[fe80::1]/x'],
      ['IPv4-mapped loopback', 'https://[::ffff:127.0.0.1]/x'],
      ['IPv4-mapped metadata', 'https://[::ffff:a9fe:a9fe]/x'],
      ['a name resolving to loopback', 'https://localhost/x'],
      ['a name with one private address among public ones', 'https://rebind.example.com/x'],
      ['a name resolving to link-local', 'https://meta.example.com/x'],
      ['a name resolving to an IPv4-mapped private address', 'https://mapped.example.com/x'],
      ['a name resolving to a NAT64 address', 'https://nat64.example.com/x'],
      ['a name that does not resolve', 'https://nowhere.example.com/x'],
      ['a name with no addresses', 'https://empty.example.com/x'],
    ])('refuses %s by address', async (_what, url) => {
      expect(await refusal(policy(dns), url)).toEqual(['URL_NOT_ALLOWED', 'address']);
    });

    it.each([
      ['ssh when not enabled', 'ssh://git@git.example.com/x.git', 'scheme'],
      ['git:// when not enabled', 'git://git.example.com/x.git', 'scheme'],
      ['http when not enabled', 'http://git.example.com/x.git', 'scheme'],
      ['file://', 'file:///etc/passwd', 'scheme'],
      ['a non-default port', 'https://git.example.com:8443/x.git', 'port'],
      ['a password', 'https://u:p@git.example.com/x.git', 'credentials'],
      ['something that is not a URL', 'git.example.com:org/x.git', 'scheme'],
    ])('refuses %s before resolving anything', async (_what, url, reason) => {
      const quiet = fakeDns({});
      expect(await refusal(policy(quiet), url)).toEqual(['URL_NOT_ALLOWED', reason]);
      expect(quiet.asked).toEqual([]);
    });

    it('refuses an ssh host that is not a DNS name (non-special schemes do not normalise hosts)', async () => {
      const p = policy(fakeDns({}), { protocols: ['ssh'] });
      expect(await refusal(p, 'ssh://git@ex%61mple.com/x.git')).toEqual(['URL_NOT_ALLOWED', 'host']);
    });

    it('resolves an ssh host that looks like a number and judges what it resolves to', async () => {
      const numeric = fakeDns({ '0x7f000001': ['127.0.0.1'] });
      const p = policy(numeric, { protocols: ['ssh'] });
      expect(await refusal(p, 'ssh://git@0x7f000001/x.git')).toEqual(['URL_NOT_ALLOWED', 'address']);
    });

    it('counts an explicit default port as the default, for ssh and git too', async () => {
      const p = policy(dns, { protocols: ['https', 'ssh', 'git'] });
      expect((await p.check('https://git.example.com:443/x')).port).toBe(443);
      expect((await p.check('ssh://git@git.example.com:22/x')).port).toBe(22);
      expect((await p.check('git://git.example.com/x')).port).toBe(9418);
      expect(await refusal(p, 'ssh://git@git.example.com:2222/x')).toEqual(['URL_NOT_ALLOWED', 'port']);
    });

    it('lets an operator-listed host resolve anywhere, on the listed port only', async () => {
      const p = policy(dns, {
        protocols: ['https', 'http'],
        allowedHosts: ['git.corp', '127.0.0.1:8080', '[::1]:9000'],
      });
      expect((await p.check('https://git.corp/x.git')).addresses).toEqual(['10.1.2.3']);
      expect(await refusal(p, 'https://git.corp:8443/x.git')).toEqual(['URL_NOT_ALLOWED', 'port']);
      expect((await p.check('http://127.0.0.1:8080/x.git')).port).toBe(8080);
      expect(await refusal(p, 'http://127.0.0.1/x.git')).toEqual(['URL_NOT_ALLOWED', 'address']);
      expect(await refusal(p, 'http://127.0.0.1:8081/x.git')).toEqual(['URL_NOT_ALLOWED', 'port']);
      expect((await p.check('http://[::1]:9000/x.git')).addresses).toEqual(['::1']);
    });

    it('with allowPrivate lets any host reach private and loopback addresses, but never link-local', async () => {
      const p = policy(dns, { allowPrivate: true });
      expect((await p.check('https://git.corp/x.git')).addresses).toEqual(['10.1.2.3']);
      expect((await p.check('https://localhost/x.git')).addresses).toEqual(['127.0.0.1', '::1']);
      expect(await refusal(p, 'https://169.254.169.254/')).toEqual(['URL_NOT_ALLOWED', 'address']);
      expect(await refusal(p, 'https://meta.example.com/')).toEqual(['URL_NOT_ALLOWED', 'address']);
      expect(await refusal(p, 'https://0.0.0.0/')).toEqual(['URL_NOT_ALLOWED', 'address']);
    });

    it('gives the same answer for a private name and one that does not resolve', async () => {
      const p = policy(dns);
      const messages = await Promise.all(
        ['https://git.corp/x', 'https://nowhere.example.com/x'].map((u) =>
          p.check(u).catch((e: unknown) => (isAppError(e) ? [e.message, e.details] : e)),
        ),
      );
      expect(messages[0]).toEqual(messages[1]);
    });
  });

  describe('isAllowedAddress', () => {
    it('accepts public unicast only', () => {
      expect(['8.8.8.8', '2001:4860:4860::8888'].map((a) => isAllowedAddress(a, false))).toEqual([true, true]);
      expect(['127.0.0.2', '::1', 'not-an-ip', '2002:7f00:1::1'].map((a) => isAllowedAddress(a, false))).toEqual([
        false,
        false,
        false,
        false,
      ]);
    });
  });

  describe('parseHostEntry', () => {
    it('normalises hosts as URLs do and keeps an explicit port', () => {
      expect(parseHostEntry('Git.Corp')).toEqual({ host: 'git.corp', port: undefined });
      expect(parseHostEntry('0x7f000001:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
      expect(parseHostEntry('[::1]:443')).toEqual({ host: '::1', port: 443 });
      expect(() => parseHostEntry('git.corp/path')).toThrow(/host/);
    });
  });
});
