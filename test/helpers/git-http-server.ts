import { spawn } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';

export interface GitHttpServer {
  readonly port: number;
  /** Every request's path, in order. */
  readonly requests: string[];
  /** Every Authorization header a client sent. */
  readonly authorizations: string[];
  close(): Promise<void>;
}

/**
 * git's smart HTTP protocol on 127.0.0.1 through `git http-backend` (CGI),
 * serving the bare repositories under `root`. `/moved/…` answers a redirect
 * to `/…`; with `requireAuth`, requests without credentials get a 401 Basic
 * challenge (so a client that has any, e.g. from a ~/.netrc, sends them).
 */
export async function startGitHttpServer(root: string, opts: { requireAuth?: boolean } = {}): Promise<GitHttpServer> {
  const requests: string[] = [];
  const authorizations: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url.pathname);
    if (req.headers.authorization !== undefined) authorizations.push(req.headers.authorization);
    if (url.pathname.startsWith('/moved/')) {
      res.writeHead(302, { location: url.pathname.replace('/moved/', '/') + url.search }).end();
      return;
    }
    if (opts.requireAuth === true && req.headers.authorization === undefined) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
      return;
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.replace(/^\?/, ''),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-encoding'] === undefined
          ? {}
          : { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] }),
        ...(req.headers['git-protocol'] === undefined ? {} : { GIT_PROTOCOL: String(req.headers['git-protocol']) }),
      },
    });
    req.pipe(cgi.stdin);
    const out: Buffer[] = [];
    cgi.stdout.on('data', (c: Buffer) => out.push(c));
    cgi.on('close', () => {
      const all = Buffer.concat(out);
      const split = all.indexOf('\r\n\r\n');
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of all.subarray(0, split).toString().split('\r\n')) {
        const at = line.indexOf(': ');
        if (at < 0) continue;
        const [k, v] = [line.slice(0, at), line.slice(at + 2)];
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]);
        else headers[k] = v;
      }
      res.writeHead(status, headers).end(all.subarray(split + 4));
    });
  });
  const port = await new Promise<number>((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
  return {
    port,
    requests,
    authorizations,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
