import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { Config } from '../config/config.ts';
import { ALL_SCOPES, type RequestContext } from '../domain/tenancy/tenancy.types.ts';
import { AppError, errors } from '../errors.ts';
import { openEngram, type Engram } from '../main.ts';
import { readLock } from '../storage/local/data-dir-lock.ts';

/**
 * Where a CLI command runs. With a server running on the same embedded data
 * directory (its lock names its URL), or with ENGRAM_URL set, commands go
 * through the REST API; otherwise they open the store themselves, holding the
 * data-dir lock so a server started meanwhile refuses instead of corrupting it.
 */
export type Target =
  | { readonly kind: 'http'; readonly url: string; call<T>(method: string, route: string, body?: unknown): Promise<T> }
  | { readonly kind: 'direct'; readonly engram: Engram; readonly ctx: RequestContext };

export function readKey(config: Config): string | undefined {
  if (config.apiKey !== undefined) return config.apiKey;
  try {
    return readFileSync(path.join(config.dataDir, 'admin.key'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function httpTarget(url: string, key: string | undefined): Target {
  return {
    kind: 'http',
    url,
    async call<T>(method: string, route: string, body?: unknown): Promise<T> {
      if (key === undefined) {
        throw errors.unauthenticated(
          'No API key: set ENGRAM_API_KEY (or ENGRAM_API_KEY_FILE), or keep <data dir>/admin.key',
        );
      }
      let res: Response;
      try {
        res = await fetch(`${url}${route}`, {
          method,
          headers: {
            authorization: `Bearer ${key}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      } catch (e) {
        throw errors.unavailable(`The Engram server at ${url}`, e);
      }
      if (res.status === 204) return undefined as T;
      const json = (await res.json().catch(() => ({}))) as {
        error?: { code?: string; message?: string; details?: unknown };
      };
      if (!res.ok) {
        const code = (json.error?.code ?? 'INTERNAL') as AppError['code'];
        throw new AppError(code, json.error?.message ?? `HTTP ${res.status}`, { details: json.error?.details });
      }
      return json as T;
    },
  };
}

/**
 * Audits a change a CLI command made directly on the store (through a server,
 * the server audits it). The actor is the operator's OS user.
 */
export async function auditCli(
  engram: Engram,
  orgId: string | null,
  action: string,
  resourceId: string | null,
  details: Record<string, unknown> = {},
): Promise<void> {
  await engram.audit.record({
    orgId,
    actorType: 'system',
    actorId: `cli:${userInfo().username}`,
    authMethod: 'system',
    action,
    resourceType: action.split('.')[0] ?? null,
    resourceId,
    outcome: 'success',
    status: null,
    ip: null,
    userAgent: 'engram-cli',
    requestId: null,
    details,
  });
}

/**
 * Operator commands that need the store itself (orgs, audit of every chain):
 * they open it directly, so on the embedded store the server must be stopped.
 */
export async function withStore(config: Config, what: string, fn: (engram: Engram) => Promise<void>): Promise<void> {
  if (config.store.kind === 'pglite') {
    const holder = readLock(config.dataDir);
    if (holder !== undefined) {
      throw new AppError(
        'STORE_LOCKED',
        `${what} needs the store itself, and the server (pid ${holder.pid}) holds ${config.dataDir}. Stop it first, or use PostgreSQL.`,
      );
    }
  }
  const log = pino({ level: 'warn' }, pino.destination(2));
  const engram = await openEngram(config, { log });
  try {
    await fn(engram);
  } finally {
    await engram.close();
  }
}

export async function withTarget(config: Config, orgSlug: string, fn: (t: Target) => Promise<void>): Promise<void> {
  if (config.serverUrlExplicit) return fn(httpTarget(config.serverUrl, readKey(config)));
  if (config.store.kind === 'pglite') {
    const holder = readLock(config.dataDir);
    if (holder?.url != null) return fn(httpTarget(holder.url, readKey(config)));
  }
  const log = pino({ level: 'warn' }, pino.destination(2));
  const engram = await openEngram(config, { log });
  try {
    const org = await engram.system.findOrgBySlug(orgSlug);
    if (org === undefined) {
      throw new AppError(
        'ORG_NOT_FOUND',
        `No org "${orgSlug}". Start the server once (npm start) to create "default".`,
      );
    }
    const ctx: RequestContext = {
      orgId: org.id,
      actor: { type: 'system', id: 'cli' },
      roles: ['owner'],
      scopes: new Set(ALL_SCOPES),
      authMethod: 'system',
      requestId: 'cli',
    };
    await fn({ kind: 'direct', engram, ctx });
  } finally {
    await engram.close();
  }
}
