import path from 'node:path';
import { Command, type Option } from 'commander';
import { AppError } from '../errors.ts';
import { presentRepo } from '../http/routes/code.routes.ts';
import { auditCli, type Target } from './target.ts';

type RepoJson = ReturnType<typeof presentRepo>;
type RepoDetail = RepoJson & { counts?: { files: number; symbols: number; edges: number } };

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const err = (s: string): void => {
  process.stderr.write(s);
};

const POLL_MS = 500;

/** `https://…`, `ssh://…`, `file://…` are URLs; anything else is a directory (made absolute here). */
const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s) || s.startsWith('ext::');

function progressLine(r: RepoJson): string {
  const p = r.progress;
  const pct = p.filesTotal === 0 ? 0 : Math.floor((100 * p.filesDone) / p.filesTotal);
  const width = 24;
  const filled = Math.round((width * pct) / 100);
  return (
    `${r.name} ${r.status.padEnd(8)} ${p.phase.padEnd(9)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` +
    `${p.filesDone}/${p.filesTotal} files (${p.parsed} parsed, ${p.unchanged} unchanged, ${p.removed} removed)`
  );
}

function summary(r: RepoDetail): string {
  const counts = r.counts === undefined ? '' : `  ${r.counts.files} files, ${r.counts.symbols} symbols`;
  const commit = r.lastIndexedCommit === null ? '' : `  @${r.lastIndexedCommit.slice(0, 12)}`;
  return `${r.id}  ${r.status.padEnd(8)} ${r.name}  ${r.location}${commit}${counts}${r.lastError === null ? '' : `  error: ${r.lastError}`}`;
}

async function fetchRepo(t: Target, id: string): Promise<RepoDetail> {
  if (t.kind === 'http') return t.call<RepoDetail>('GET', `/v1/repos/${encodeURIComponent(id)}`);
  const { repo, counts } = await t.engram.repos.get(t.ctx, id);
  return { ...presentRepo(repo), ...(counts === undefined ? {} : { counts }) };
}

/**
 * Follows a run until the repo is indexed or failed, drawing progress on
 * stderr (one redrawn line on a terminal, a line per change otherwise). On
 * the store directly there is no server worker: this process runs the queue.
 */
async function waitFor(t: Target, id: string): Promise<RepoDetail> {
  const tty = process.stderr.isTTY;
  let last = '';
  const draw = (r: RepoJson) => {
    const line = progressLine(r);
    if (line === last) return;
    last = line;
    err(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  };
  for (;;) {
    const ran = t.kind === 'direct' ? await t.engram.worker.runOnce() : 0;
    const r = await fetchRepo(t, id);
    draw(r);
    if (r.status === 'indexed' || r.status === 'failed') {
      if (tty) err('\n');
      return r;
    }
    if (ran === 0) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** `engram repos add|list|remove|index`: the org's repository registry. */
export function reposCommand(
  onTarget: (org: string, fn: (t: Target) => Promise<void>) => Promise<void>,
  orgOpt: Option,
): Command {
  const repos = new Command('repos').description('Code repositories of your org: register, index, list, remove');

  repos
    .command('add <path-or-url>')
    .description(
      'Register a directory (under <root>/<org slug>/ of the server’s CODE_ALLOWED_ROOTS) or a git URL, and index it',
    )
    .option('--name <name>', 'display name (default: the last path segment)')
    .option('--wait', 'wait for the first index, showing progress on stderr')
    .addOption(orgOpt)
    .action(async (where: string, o: { name?: string; wait?: boolean; org: string }) => {
      const body = isUrl(where) ? { url: where, name: o.name } : { path: path.resolve(where), name: o.name };
      await onTarget(o.org, async (t) => {
        const repo =
          t.kind === 'http'
            ? await t.call<RepoJson>('POST', '/v1/repos', body)
            : await t.engram.repos.register(t.ctx, body).then(async (r) => {
                await auditCli(t.engram, t.ctx.orgId, 'repo.create', r.id);
                return presentRepo(r);
              });
        out(`registered ${repo.id} (${repo.name}): ${repo.status}`);
        if (t.kind === 'direct' && o.wait !== true) out('it is indexed when the server runs (or pass --wait)');
        if (o.wait === true) finish(await waitFor(t, repo.id));
      });
    });

  repos
    .command('list')
    .description('List repositories with their indexing status')
    .option('--json', 'print the raw JSON answer')
    .addOption(orgOpt)
    .action(async (o: { json?: boolean; org: string }) => {
      await onTarget(o.org, async (t) => {
        const items =
          t.kind === 'http'
            ? (await t.call<{ items: RepoJson[] }>('GET', '/v1/repos')).items
            : (await t.engram.repos.list(t.ctx)).map(presentRepo);
        if (o.json === true) return out(JSON.stringify(items, null, 2));
        if (items.length === 0) out('no repositories');
        for (const r of items) out(summary(r));
      });
    });

  repos
    .command('remove <id>')
    .description('Remove a repository with its files, symbols and edges')
    .addOption(orgOpt)
    .action(async (id: string, o: { org: string }) => {
      await onTarget(o.org, async (t) => {
        if (t.kind === 'http') await t.call('DELETE', `/v1/repos/${encodeURIComponent(id)}`);
        else {
          await t.engram.repos.remove(t.ctx, id);
          await auditCli(t.engram, t.ctx.orgId, 'repo.delete', id);
        }
        out(`removed ${id}`);
      });
    });

  repos
    .command('index <id>')
    .description('Re-index a repository (only changed files are re-parsed)')
    .option('--wait', 'wait until it is indexed, showing progress on stderr')
    .addOption(orgOpt)
    .action(async (id: string, o: { wait?: boolean; org: string }) => {
      await onTarget(o.org, async (t) => {
        const r =
          t.kind === 'http'
            ? await t.call<RepoJson & { queued: boolean }>('POST', `/v1/repos/${encodeURIComponent(id)}/index`)
            : await t.engram.repos.reindex(t.ctx, id).then(async (x) => {
                await auditCli(t.engram, t.ctx.orgId, 'repo.index', id);
                return { ...presentRepo(x.repo), queued: x.queued };
              });
        out(r.queued ? `queued ${r.id} (${r.name})` : `${r.id} (${r.name}) already has a run pending: ${r.status}`);
        if (o.wait === true) finish(await waitFor(t, id));
      });
    });
  return repos;
}

function finish(r: RepoDetail): void {
  out(summary(r));
  if (r.status === 'failed') throw new AppError('INTERNAL', `indexing ${r.name} failed: ${r.lastError ?? 'unknown'}`);
}
