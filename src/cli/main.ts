import { Command, Option } from 'commander';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import pino from 'pino';
import { loadConfig, redactedSummary, type Config } from '../config/config.ts';
import { JOB_STATES, type JobState } from '../domain/jobs/job.types.ts';
import type { MemoryScope } from '../domain/memory/memory.types.ts';
import { RATE_CLASSES, type RateClass } from '../domain/tenancy/quota.types.ts';
import { isScope } from '../domain/tenancy/tenancy.types.ts';
import type { Scope } from '../domain/tenancy/tenancy.types.ts';
import { AppError, errors, isAppError } from '../errors.ts';
import { presentApiKey, presentHit, presentMemory, presentVersion } from '../http/schemas.ts';
import { presentJob } from '../http/routes/jobs.routes.ts';
import { bootstrapDefaultOrg, mcpServerFactory, startServer } from '../main.ts';
import { bridgeStdio, serveStdio } from '../mcp/stdio.ts';
import { DataDirLock, readLock } from '../storage/local/data-dir-lock.ts';
import { openDatabase } from '../storage/postgres/database.ts';
import { Migrator, migrationLabel } from '../storage/postgres/migrator.ts';
import { auditCli, readKey, withStore, withTarget, type Target } from './target.ts';
import { importCommand } from './import.ts';
import { reposCommand } from './repos.ts';

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const json = (v: unknown): void => out(JSON.stringify(v, null, 2));
type JobJson = ReturnType<typeof presentJob>;

let cachedConfig: Config | undefined;
const config = (): Config => (cachedConfig ??= loadConfig(process.env));

function scopeFrom(o: { user?: string; agent?: string; project?: string; session?: string }): MemoryScope {
  return { user: o.user, agent: o.agent, project: o.project, session: o.session };
}

const scopeOptions = (c: Command) =>
  c
    .option('--user <id>', 'scope: user id')
    .option('--agent <id>', 'scope: agent id')
    .option('--project <id>', 'scope: project id')
    .option('--session <id>', 'scope: session id');

function parseDuration(s: string): Date {
  const m = /^(\d+)([hdw])$/.exec(s);
  if (m === null)
    throw new AppError('VALIDATION_FAILED', `--expires-in takes a number with h, d or w (e.g. 90d), not "${s}"`);
  const hours = Number(m[1]) * (m[2] === 'h' ? 1 : m[2] === 'd' ? 24 : 168);
  return new Date(Date.now() + hours * 3_600_000);
}

async function migrate(action: 'up' | 'down' | 'status' | 'verify', steps: number): Promise<void> {
  const cfg = config();
  if (cfg.store.kind === 'pglite') {
    const holder = readLock(cfg.dataDir);
    if (holder !== undefined) {
      throw new AppError(
        'STORE_LOCKED',
        `The server (pid ${holder.pid}) is using ${cfg.dataDir}. Stop it first; it applies pending migrations itself when it starts.`,
      );
    }
  }
  const lock = cfg.store.kind === 'pglite' ? DataDirLock.acquire(cfg.dataDir) : undefined;
  const db = await openDatabase(cfg.store);
  try {
    const migrator = new Migrator(db.adminDb, db.kind, undefined, { 'engram.region': cfg.residency.region });
    if (action === 'status') {
      for (const s of await migrator.status()) {
        out(`${migrationLabel(s).padEnd(28)} ${s.state.padEnd(12)} ${s.appliedAt?.toISOString() ?? ''}`);
      }
    } else if (action === 'verify') {
      const r = await migrator.verify();
      if (r.ok) out('ok: migrations applied unchanged; RLS enabled and forced on every tenant table');
      else {
        for (const p of r.problems) out(`problem: ${p}`);
        process.exitCode = 1;
      }
    } else {
      const runs = action === 'up' ? await migrator.up() : await migrator.down(steps);
      if (runs.length === 0) out(action === 'up' ? 'nothing to apply: the schema is current' : 'nothing to roll back');
      for (const r of runs) {
        const checked = r.verified.map((v) => `${v.table}(${v.rows} rows)`).join(', ');
        out(
          `${r.direction === 'up' ? 'applied' : 'rolled back'} ${migrationLabel(r)}${checked ? `; data verified: ${checked}` : ''}`,
        );
      }
    }
  } finally {
    await db.close();
    lock?.release();
  }
}

async function onTarget(org: string, fn: (t: Target) => Promise<void>): Promise<void> {
  await withTarget(config(), org, fn);
}

export function buildCli(): Command {
  const program = new Command('engram')
    .description('Engram: memory and code context for AI agents.\nStart with `engram serve` (or `npm start`).')
    .showHelpAfterError();

  program
    .command('serve')
    .description('Run the HTTP server (REST API, /docs, /health) on the configured store')
    .option(
      '--no-print-key',
      'on first start, do not print the bootstrap admin key (stdout often ends up in a log collector); it is still saved in <data dir>/admin.key',
    )
    .action(async (opts: { printKey: boolean }) => {
      const server = await startServer(config(), undefined, { printKey: opts.printKey });
      const stop = (signal: string) => {
        process.stderr.write(`\n${signal}: shutting down…\n`);
        const force = setTimeout(() => process.exit(1), config().shutdownTimeoutMs).unref();
        void server.stop().then(() => {
          clearTimeout(force);
          process.exit(0);
        });
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });

  program
    .command('config')
    .description('Validate the configuration and print it with secrets redacted')
    .action(() => json(redactedSummary(config())));

  const mig = program.command('migrate').description('Database migrations (numbered, reversible)');
  mig
    .command('up')
    .description('Apply pending migrations')
    .action(() => migrate('up', 0));
  mig
    .command('down')
    .description('Roll back the latest migration(s)')
    .option('--steps <n>', 'how many to roll back', '1')
    .action((o: { steps: string }) => migrate('down', Math.max(1, Number(o.steps) || 1)));
  mig
    .command('status')
    .description('List migrations and whether each is applied')
    .action(() => migrate('status', 0));
  mig
    .command('verify')
    .description('Check applied files are unchanged and RLS guards every tenant table')
    .action(() => migrate('verify', 0));

  const orgOpt = new Option('--org <slug>', 'org to act on when no server is running').default('default');

  const keys = program.command('keys').description('API keys of your org');
  keys
    .command('create')
    .description('Create an API key; its secret is printed once')
    .requiredOption('--name <name>', 'a label, e.g. "ci" or "claude-desktop"')
    .option(
      '--scopes <list>',
      'comma-separated: memories:read,memories:write,admin:keys,audit:read,ops:read,jobs:read,jobs:write,code:read,code:write (default: all)',
    )
    .option('--expires-in <duration>', 'e.g. 12h, 90d, 4w')
    .addOption(orgOpt)
    .action(async (o: { name: string; scopes?: string; expiresIn?: string; org: string }) => {
      const scopes = o.scopes?.split(',').map((s) => s.trim());
      const bad = scopes?.filter((s) => !isScope(s));
      if (bad !== undefined && bad.length > 0)
        throw new AppError('VALIDATION_FAILED', `unknown scope(s): ${bad.join(', ')}`);
      const expiresAt = o.expiresIn === undefined ? undefined : parseDuration(o.expiresIn);
      await onTarget(o.org, async (t) => {
        const r =
          t.kind === 'http'
            ? await t.call<{ key: unknown; secret: string }>('POST', '/v1/keys', { name: o.name, scopes, expiresAt })
            : await t.engram.apiKeys
                .create(t.ctx.orgId, { name: o.name, scopes: scopes as Scope[] | undefined, expiresAt })
                .then(async (i) => {
                  await auditCli(t.engram, t.ctx.orgId, 'api_key.create', i.key.id);
                  return { key: presentApiKey(i.key), secret: i.secret };
                });
        json(r.key);
        out(`\nsecret (shown once): ${r.secret}`);
      });
    });
  keys
    .command('list')
    .description('List API keys (never their secrets)')
    .addOption(orgOpt)
    .action(async (o: { org: string }) =>
      onTarget(o.org, async (t) => {
        const items =
          t.kind === 'http'
            ? (await t.call<{ items: unknown[] }>('GET', '/v1/keys')).items
            : (await t.engram.apiKeys.list(t.ctx)).map(presentApiKey);
        json(items);
      }),
    );
  keys
    .command('revoke <id>')
    .description('Revoke an API key now')
    .addOption(orgOpt)
    .action(async (id: string, o: { org: string }) =>
      onTarget(o.org, async (t) => {
        json(
          t.kind === 'http'
            ? await t.call('DELETE', `/v1/keys/${encodeURIComponent(id)}`)
            : presentApiKey(
                await t.engram.apiKeys.revoke(t.ctx, id).then(async (k) => {
                  await auditCli(t.engram, t.ctx.orgId, 'api_key.revoke', k.id);
                  return k;
                }),
              ),
        );
      }),
    );

  const mem = program.command('memories').description('Add, search, get, list and delete memories');
  scopeOptions(mem.command('add <content>').description('Remember something'))
    .option('--tag <tag...>', 'tags (repeatable)')
    .option('--metadata <json>', 'a JSON object')
    .option('--source <source>', 'where it came from')
    .addOption(orgOpt)
    .action(
      async (content: string, o: { tag?: string[]; metadata?: string; source?: string; org: string } & MemoryScope) => {
        let metadata: Record<string, unknown> | undefined;
        if (o.metadata !== undefined) {
          try {
            metadata = JSON.parse(o.metadata) as Record<string, unknown>;
          } catch {
            throw new AppError('VALIDATION_FAILED', '--metadata must be a JSON object');
          }
        }
        const body = { content, scope: scopeFrom(o), tags: o.tag, metadata, source: o.source };
        await onTarget(o.org, async (t) => {
          json(
            t.kind === 'http'
              ? await t.call('POST', '/v1/memories', body)
              : await t.engram.memories.remember(t.ctx, body).then(async (r) => {
                  await auditCli(t.engram, t.ctx.orgId, 'memory.create', r.memory.id);
                  return { ...presentMemory(r.memory), deduplicated: !r.created };
                }),
          );
        });
      },
    );
  scopeOptions(mem.command('search <query>').description('Search memories (hybrid by default)'))
    .addOption(
      new Option('--mode <mode>', 'lexical | vector | hybrid')
        .choices(['lexical', 'vector', 'hybrid'])
        .default('hybrid'),
    )
    .option('--limit <n>', 'how many results', '10')
    .option('--json', 'print the raw JSON answer')
    .addOption(orgOpt)
    .action(
      async (
        query: string,
        o: { mode: 'lexical' | 'vector' | 'hybrid'; limit: string; json?: boolean; org: string } & MemoryScope,
      ) => {
        const body = { query, mode: o.mode, limit: Number(o.limit), scope: scopeFrom(o) };
        await onTarget(o.org, async (t) => {
          const r =
            t.kind === 'http'
              ? await t.call<{ results: Array<ReturnType<typeof presentHit>>; degraded: string[] }>(
                  'POST',
                  '/v1/memories/search',
                  body,
                )
              : await t.engram.search
                  .search(t.ctx, { query, mode: o.mode, limit: body.limit, filter: { scope: body.scope } })
                  .then((x) => ({ ...x, results: x.results.map(presentHit) }));
          if (o.json === true) return json(r);
          if (r.degraded.length > 0) out(`(degraded: ${r.degraded.join(', ')} unavailable)`);
          if (r.results.length === 0) out('no results');
          for (const h of r.results) {
            const sig = Object.keys(h.signals).join('+');
            out(
              `${h.score.toFixed(4)}  ${sig.padEnd(14)} ${h.memory.id}  ${h.memory.content.replace(/\s+/g, ' ').slice(0, 80)}`,
            );
          }
        });
      },
    );
  mem
    .command('get <id>')
    .description('Show one memory')
    .option('--history', 'show every version')
    .addOption(orgOpt)
    .action(async (id: string, o: { history?: boolean; org: string }) =>
      onTarget(o.org, async (t) => {
        const route = `/v1/memories/${encodeURIComponent(id)}${o.history === true ? '/history' : ''}`;
        if (t.kind === 'http') return json(await t.call('GET', route));
        json(
          o.history === true
            ? { memoryId: id, versions: (await t.engram.memories.history(t.ctx, id)).map(presentVersion) }
            : presentMemory(await t.engram.memories.get(t.ctx, id)),
        );
      }),
    );
  scopeOptions(mem.command('list').description('List memories, newest first'))
    .option('--limit <n>', 'page size', '20')
    .option('--cursor <cursor>', 'continue from a previous page')
    .addOption(orgOpt)
    .action(async (o: { limit: string; cursor?: string; org: string } & MemoryScope) =>
      onTarget(o.org, async (t) => {
        if (t.kind === 'http') {
          const qs = new URLSearchParams({ limit: o.limit });
          for (const k of ['user', 'agent', 'project', 'session'] as const)
            if (o[k] !== undefined) qs.set(k, o[k] ?? '');
          if (o.cursor !== undefined) qs.set('cursor', o.cursor);
          return json(await t.call('GET', `/v1/memories?${qs.toString()}`));
        }
        const page = await t.engram.memories.list(t.ctx, { scope: scopeFrom(o) }, Number(o.limit), o.cursor ?? null);
        json({ items: page.items.map(presentMemory), nextCursor: page.nextCursor });
      }),
    );
  mem
    .command('delete <id>')
    .description('Forget a memory (and its history)')
    .addOption(orgOpt)
    .action(async (id: string, o: { org: string }) =>
      onTarget(o.org, async (t) => {
        if (t.kind === 'http') await t.call('DELETE', `/v1/memories/${encodeURIComponent(id)}`);
        else {
          await t.engram.memories.forget(t.ctx, id);
          await auditCli(t.engram, t.ctx.orgId, 'memory.delete', id);
        }
        out(`deleted ${id}`);
      }),
    );

  program
    .command('mcp')
    .description(
      'MCP over stdio for local agents (Claude Desktop, Claude Code, Cursor): uses ENGRAM_API_KEY (or <data dir>/admin.key); relays to a running server if one holds the store',
    )
    .action(async () => {
      const cfg = config();
      let key = readKey(cfg);
      const holder = cfg.store.kind === 'pglite' ? readLock(cfg.dataDir) : undefined;
      if (cfg.serverUrlExplicit || holder?.url != null) {
        if (key === undefined) {
          throw new AppError(
            'UNAUTHENTICATED',
            'No API key for the Engram server: set ENGRAM_API_KEY (or ENGRAM_API_KEY_FILE), or keep <data dir>/admin.key',
          );
        }
        return bridgeStdio(cfg.serverUrlExplicit ? cfg.serverUrl : (holder?.url ?? cfg.serverUrl), key);
      }
      await withStore(cfg, 'mcp', async (engram) => {
        // A fresh store is set up as `engram serve` sets it up. stdout carries
        // MCP only: where the key is goes to stderr, the key itself nowhere.
        if (key === undefined) {
          const boot = await bootstrapDefaultOrg(engram);
          if (boot === undefined) {
            throw new AppError(
              'UNAUTHENTICATED',
              `No API key: set ENGRAM_API_KEY (or ENGRAM_API_KEY_FILE); the org "default" exists but ${path.join(cfg.dataDir, 'admin.key')} does not`,
            );
          }
          process.stderr.write(
            `engram: created the org "default" and an admin API key, saved in ${boot.keyFile} (mode 0600)\n`,
          );
          key = boot.adminKey;
        }
        const ctx = await engram.authenticator.authenticate({
          authorization: `Bearer ${key}`,
          dpop: undefined,
          method: 'POST',
          url: 'stdio:',
          requestId: randomUUID(),
        });
        const log = pino({ level: cfg.logLevel }, pino.destination(2));
        const server = mcpServerFactory(engram, log)(ctx, { transport: 'stdio', ip: null, userAgent: 'stdio' });
        await serveStdio(server);
      });
    });

  const audit = program.command('audit').description('The tamper-evident audit log');
  audit
    .command('verify')
    .description(
      'Recompute the hash chains: every org’s and the system chain (directly), or your org’s (through a running server)',
    )
    .action(async () => {
      const cfg = config();
      const report = (
        v: { chainId: string; entries: number; ok: boolean; problems: readonly string[] },
        label: string,
      ) => {
        out(`${v.ok ? 'ok     ' : 'BROKEN '} ${label.padEnd(40)} ${v.entries} entries`);
        for (const p of v.problems) out(`         - ${p}`);
        if (!v.ok) process.exitCode = 1;
      };
      const remote = cfg.serverUrlExplicit || (cfg.store.kind === 'pglite' && readLock(cfg.dataDir)?.url != null);
      if (remote) {
        return withTarget(cfg, 'default', async (t) => {
          if (t.kind !== 'http') return;
          const v = await t.call<{ chainId: string; entries: number; ok: boolean; problems: string[] }>(
            'GET',
            '/v1/audit/verify',
          );
          report(v, `org ${v.chainId}`);
        });
      }
      await withStore(cfg, 'audit verify', async (engram) => {
        const orgs = new Map((await engram.orgs.list()).map((o) => [o.id, o.slug]));
        const chains = await engram.audit.verifyAll();
        if (chains.length === 0) out('no audit entries yet');
        for (const v of chains) report(v, v.orgId === null ? 'system' : `org ${orgs.get(v.orgId) ?? v.orgId}`);
      });
    });
  audit
    .command('list')
    .description('Recent audit entries of your org, newest first')
    .option('--action <action>', 'e.g. memory.delete')
    .addOption(new Option('--outcome <outcome>').choices(['success', 'denied', 'failure', 'error']))
    .option('--limit <n>', 'how many', '20')
    .addOption(orgOpt)
    .action(
      async (o: {
        action?: string;
        outcome?: 'success' | 'denied' | 'failure' | 'error';
        limit: string;
        org: string;
      }) =>
        onTarget(o.org, async (t) => {
          if (t.kind === 'http') {
            const qs = new URLSearchParams({ limit: o.limit });
            if (o.action !== undefined) qs.set('action', o.action);
            if (o.outcome !== undefined) qs.set('outcome', o.outcome);
            return json(await t.call('GET', `/v1/audit?${qs.toString()}`));
          }
          const page = await t.engram.audit.list(
            t.ctx,
            { action: o.action, outcome: o.outcome },
            Number(o.limit),
            null,
          );
          json(page);
        }),
    );

  const orgs = program
    .command('orgs')
    .description('Orgs (tenants) and their home regions — operator commands that open the store directly');
  orgs
    .command('list')
    .description('List orgs with their regions')
    .action(async () =>
      withStore(config(), 'orgs list', async (engram) => {
        for (const org of await engram.orgs.list()) out(`${org.slug.padEnd(32)} ${org.region.padEnd(16)} ${org.id}`);
      }),
    );
  orgs
    .command('create <slug>')
    .description('Create an org and print an admin API key for it (shown once)')
    .option('--name <name>', 'display name (default: the slug)')
    .option('--region <region>', 'home region (default: ENGRAM_REGION)')
    .action(async (slug: string, o: { name?: string; region?: string }) =>
      withStore(config(), 'orgs create', async (engram) => {
        const org = await engram.orgs.create({ slug, name: o.name, region: o.region });
        const key = await engram.apiKeys.create(org.id, { name: 'admin (orgs create)' });
        await auditCli(engram, org.id, 'org.create', org.id);
        await auditCli(engram, org.id, 'api_key.create', key.key.id);
        json({ ...org, createdAt: org.createdAt.toISOString() });
        out(`\nadmin key (shown once): ${key.secret}`);
      }),
    );
  orgs
    .command('set-region <slug> <region>')
    .description('Move an org’s home region (after its data has moved); instances of other regions then refuse it')
    .action(async (slug: string, region: string) =>
      withStore(config(), 'orgs set-region', async (engram) => {
        const org = await engram.orgs.setRegion(slug, region);
        // The org now lives elsewhere: the move is recorded on the system chain.
        await auditCli(engram, null, 'org.set_region', org.id);
        out(`${org.slug} now lives in ${org.region}`);
      }),
    );

  orgs
    .command('quotas <slug>')
    .description(
      'Show an org’s rate limits (per minute per route class: requests, or items for import); with options, set them (`default` clears one)',
    )
    .option('--read <n>', 'GET routes')
    .option('--write <n>', 'writes (POST/PATCH/DELETE)')
    .option('--search <n>', 'search and MCP')
    .option('--admin <n>', 'admin, audit and ops routes')
    .option('--import <n>', 'memories (not requests) per minute through POST /v1/memories/batch')
    .action(async (slug: string, o: Partial<Record<RateClass, string>>) =>
      withStore(config(), 'orgs quotas', async (engram) => {
        const org = await engram.orgs.resolve(slug);
        if (org === undefined) throw errors.notFound('org', slug);
        const patch: Partial<Record<RateClass, number | null>> = {};
        for (const cls of RATE_CLASSES) {
          const v = o[cls];
          if (v === undefined) continue;
          patch[cls] = v === 'default' ? null : /^\d+$/.test(v) ? Number(v) : Number.NaN;
        }
        if (Object.keys(patch).length > 0) {
          await engram.quotas.override(org.id, patch);
          await auditCli(engram, org.id, 'org.set_quotas', org.id);
        }
        const rows = await Promise.all(
          RATE_CLASSES.map(async (cls) => {
            const q = await engram.quotas.limitFor(org.id, cls);
            const own = (await engram.quotas.overridesOf(org.id))[cls];
            return {
              class: cls,
              perMinute: q.perMinute,
              burst: q.bucket.capacity,
              source: own === null ? 'default' : 'org',
            };
          }),
        );
        json({ org: org.slug, quotas: rows });
      }),
    );

  program
    .command('reembed')
    .description(
      'Embed memories and knowledge-graph entities that have no current vector for the model (after a model change or an outage)',
    )
    .action(async () => {
      const cfg = config();
      await withTarget(cfg, 'default', async (t) => {
        if (t.kind === 'http') {
          throw new AppError(
            'STORE_LOCKED',
            'The running server re-embeds in the background; stop it to run this by hand.',
          );
        }
        const r = await t.engram.reembed.run((n) => process.stderr.write(`\rembedded ${n}`));
        process.stderr.write('\n');
        if (r.error !== undefined) throw r.error instanceof Error ? r.error : new Error('re-embed failed');
        out(`embedded ${r.embedded} memories across ${r.orgs} org(s) with ${t.engram.embedder.model}`);
        const g = await t.engram.graph.embedStale();
        if (g.error !== undefined) throw g.error instanceof Error ? g.error : new Error('graph re-embed failed');
        out(`embedded ${g.embedded} knowledge-graph entities`);
      });
    });

  const jobs = program
    .command('jobs')
    .description('Background jobs of your org (embedding, …): list them, re-drive dead ones');
  jobs
    .command('list')
    .description('List jobs, newest first (--state dead: the dead letter)')
    .addOption(new Option('--state <state>').choices([...JOB_STATES]))
    .option('--kind <kind>', 'e.g. embed_memory')
    .option('--limit <n>', 'how many (1–500)', '50')
    .option('--json', 'print the raw JSON answer')
    .addOption(orgOpt)
    .action(async (o: { state?: JobState; kind?: string; limit: string; json?: boolean; org: string }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
        throw new AppError('VALIDATION_FAILED', '--limit takes a whole number from 1 to 500');
      }
      await onTarget(o.org, async (t) => {
        let items: JobJson[];
        if (t.kind === 'http') {
          const qs = new URLSearchParams({ limit: String(limit) });
          if (o.state !== undefined) qs.set('state', o.state);
          if (o.kind !== undefined) qs.set('kind', o.kind);
          items = (await t.call<{ items: JobJson[] }>('GET', `/v1/jobs?${qs.toString()}`)).items;
        } else {
          const page = await t.engram.jobs.list(t.ctx, { state: o.state, kind: o.kind }, limit, null);
          items = page.items.map(presentJob);
        }
        if (o.json === true) return json(items);
        if (items.length === 0) out('no jobs');
        for (const j of items) {
          const tries = `${j.attempts}/${j.maxAttempts}`;
          out(`${j.id}  ${j.state.padEnd(9)} ${j.kind.padEnd(16)} ${tries.padEnd(7)} ${j.lastError ?? ''}`);
        }
      });
    });
  jobs
    .command('retry [id]')
    .description('Re-drive a dead job (queued again, attempts reset), or every dead job with --all-dead')
    .option('--all-dead', 'every dead job of the org')
    .option('--kind <kind>', 'with --all-dead: only jobs of this kind')
    .addOption(orgOpt)
    .action(async (id: string | undefined, o: { allDead?: boolean; kind?: string; org: string }) => {
      if ((id === undefined) === (o.allDead !== true)) {
        throw new AppError('VALIDATION_FAILED', 'name a job id, or pass --all-dead (not both)');
      }
      await onTarget(o.org, async (t) => {
        if (id !== undefined) {
          const job =
            t.kind === 'http'
              ? await t.call<JobJson>('POST', `/v1/jobs/${encodeURIComponent(id)}/retry`)
              : await t.engram.jobs.retry(t.ctx, id).then(async (j) => {
                  await auditCli(t.engram, t.ctx.orgId, 'job.retry', j.id);
                  return presentJob(j);
                });
          return out(`re-driven ${job.id} (${job.kind}): ${job.state}`);
        }
        const r =
          t.kind === 'http'
            ? await t.call<{ requeued: number }>('POST', '/v1/jobs/retry', { state: 'dead', kind: o.kind })
            : await t.engram.jobs.retryDead(t.ctx, o.kind).then(async (requeued) => {
                await auditCli(t.engram, t.ctx.orgId, 'job.retry_dead', null);
                return { requeued };
              });
        out(`re-driven ${r.requeued} dead job(s)`);
      });
    });
  program.addCommand(importCommand(onTarget, orgOpt));
  program.addCommand(reposCommand(onTarget, orgOpt));
  return program;
}

export async function runCli(argv: readonly string[]): Promise<void> {
  try {
    await buildCli().parseAsync([...argv]);
  } catch (e) {
    const msg = isAppError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
    process.stderr.write(`engram: ${msg}\n`);
    if (!isAppError(e)) pino({ level: 'error' }, pino.destination(2)).error({ err: e }, 'unexpected error');
    process.exitCode = 1;
  }
}
