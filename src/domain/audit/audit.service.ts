import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { AuditChainStore, SystemStore, TenantDb } from '../../ports/tenant-db.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import {
  GENESIS_HASH,
  SYSTEM_CHAIN,
  type AuditEntry,
  type AuditEvent,
  type AuditFilter,
  type AuditHead,
  type ChainVerification,
} from './audit.types.ts';

/** JSON with object keys sorted at every level, so equal values hash equally after a jsonb round trip. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The hash of an entry: SHA-256 over every field in a fixed order, including the previous hash. */
export function hashEntry(e: Omit<AuditEntry, 'hash'>): string {
  const fields = [
    e.chainId,
    e.seq,
    e.orgId,
    e.id,
    e.at.toISOString(),
    e.actorType,
    e.actorId,
    e.authMethod,
    e.action,
    e.resourceType,
    e.resourceId,
    e.outcome,
    e.status,
    e.ip,
    e.userAgent,
    e.requestId,
    canonical(e.details),
    e.prevHash,
  ];
  return createHash('sha256').update(canonical(fields)).digest('hex');
}

interface RefusalTally {
  /** The latest refused request (a 401 when there was one), whose fields the summary keeps. */
  event: AuditEvent;
  count: number;
  /** Of `count`, how many the failure limit answered with 429. */
  limited: number;
  firstSeenAt: Date;
  lastSeenAt: Date;
  actions: Record<string, number>;
  reasons: Record<string, number>;
}

/** Distinct keys a summary keeps per field: counts of what a client sends must stay bounded too. */
const MAX_TALLY_KEYS = 10;

function bump(counts: Record<string, number>, key: string): void {
  if (key in counts) counts[key] = (counts[key] ?? 0) + 1;
  else if (Object.keys(counts).length < MAX_TALLY_KEYS) counts[key] = 1;
  else counts['(other)'] = (counts['(other)'] ?? 0) + 1;
}

const VERIFY_PAGE = 1000;
const MAX_PROBLEMS = 20;

/**
 * The audit log: who did what to which resource, when, from where, with what
 * outcome. Entries are hash-chained per org (events with no org go to the
 * system chain) so that an edited, removed or truncated entry is detected by
 * `verify`.
 */
export class AuditService {
  constructor(
    private readonly deps: {
      tenantDb: TenantDb;
      system: SystemStore;
      /** Told of every entry that could not be appended (metrics); callers still get the error. */
      onRecordFailure?: ((e: unknown) => void) | undefined;
      /** The window refused authentications are summed over (`noteRefusal`); default 60 s. */
      refusalWindowMs?: number | undefined;
      /** Sources summed at once; past it the window is written early. Default 10,000. */
      maxRefusalSources?: number | undefined;
    },
  ) {}

  private refusals = new Map<string, RefusalTally>();
  private refusalTimer: NodeJS.Timeout | undefined;

  /**
   * Counts one refused authentication (a 401, or a 429 of the failure limit)
   * instead of appending an entry for it: each source — org chain, address,
   * presented key — gets one `auth.refused` entry per window with the count,
   * the routes and the reasons, so a flood of bad credentials costs the
   * append-only log a row a minute, not a row a request.
   */
  noteRefusal(event: AuditEvent): void {
    const key = [event.orgId ?? '', event.ip ?? '', event.actorId ?? '', event.authMethod ?? ''].join('\u0000');
    const now = new Date();
    let tally = this.refusals.get(key);
    if (tally === undefined) {
      tally = { event, count: 0, limited: 0, firstSeenAt: now, lastSeenAt: now, actions: {}, reasons: {} };
      this.refusals.set(key, tally);
    }
    tally.count += 1;
    tally.lastSeenAt = now;
    if (event.status === 429) tally.limited += 1;
    else tally.event = event;
    bump(tally.actions, event.action);
    const reason = event.details.reason;
    if (typeof reason === 'string') bump(tally.reasons, reason);
    if (this.refusalTimer === undefined) {
      this.refusalTimer = setInterval(() => void this.flushRefusals(), this.deps.refusalWindowMs ?? 60_000);
      this.refusalTimer.unref();
    }
    if (this.refusals.size >= (this.deps.maxRefusalSources ?? 10_000)) void this.flushRefusals();
  }

  /** Appends the summed refusals of the window so far, one entry per source. */
  async flushRefusals(): Promise<void> {
    const tallies = [...this.refusals.values()];
    this.refusals = new Map();
    for (const t of tallies) {
      const { event } = t;
      await this.record({
        ...event,
        action: 'auth.refused',
        resourceType: null,
        resourceId: null,
        details: {
          ...event.details,
          count: t.count,
          ...(t.limited === 0 ? {} : { limited: t.limited }),
          firstSeenAt: t.firstSeenAt.toISOString(),
          lastSeenAt: t.lastSeenAt.toISOString(),
          actions: t.actions,
          reasons: t.reasons,
        },
      }).catch(() => undefined); // counted by onRecordFailure; a lost summary must not stop the others
    }
  }

  /** Writes what `noteRefusal` still holds and stops its timer. */
  async close(): Promise<void> {
    clearInterval(this.refusalTimer);
    this.refusalTimer = undefined;
    await this.flushRefusals();
  }

  /** Appends one event to its org's chain (or the system chain). */
  async record(event: AuditEvent): Promise<AuditEntry> {
    try {
      return await this.append(event);
    } catch (e) {
      this.deps.onRecordFailure?.(e);
      throw e;
    }
  }

  private append(event: AuditEvent): Promise<AuditEntry> {
    const chainId = event.orgId ?? SYSTEM_CHAIN;
    const build = (head: AuditHead | undefined): AuditEntry => {
      const unhashed = {
        ...event,
        chainId,
        seq: (head?.seq ?? 0) + 1,
        id: uuidv7(),
        // Millisecond precision survives the timestamptz round trip exactly.
        at: new Date(),
        prevHash: head?.hash ?? GENESIS_HASH,
      };
      return { ...unhashed, hash: hashEntry(unhashed) };
    };
    if (event.orgId === null) return this.deps.system.systemAuditChain().appendEntry(build);
    return this.deps.tenantDb.withTenant(event.orgId, ({ audit }) => audit.appendEntry(build));
  }

  /** The caller's org's entries, newest first. */
  async list(
    ctx: RequestContext,
    filter: AuditFilter,
    limit: number,
    cursor: string | null,
  ): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
    const before = cursor === null ? null : Number.parseInt(cursor, 10);
    const items = await this.deps.tenantDb.withTenant(ctx.orgId, ({ audit }) =>
      audit.findEntries(filter, limit + 1, before !== null && Number.isSafeInteger(before) ? before : null),
    );
    const page = items.slice(0, limit);
    return { items: page, nextCursor: items.length > limit ? String(page.at(-1)?.seq ?? '') : null };
  }

  /** Verifies the caller's org's chain. */
  verifyOrg(ctx: RequestContext): Promise<ChainVerification> {
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ audit }) => verifyChain(ctx.orgId, ctx.orgId, audit));
  }

  /** Verifies every chain (operator use: `engram audit verify`). */
  async verifyAll(): Promise<ChainVerification[]> {
    const out: ChainVerification[] = [];
    for (const { chainId, orgId } of await this.deps.system.findAuditChainIds()) {
      out.push(await this.deps.system.withAuditChain(chainId, (c) => verifyChain(chainId, orgId, c)));
    }
    return out;
  }
}

/** Walks a chain from the start: seqs 1..n without gaps, each hash recomputed and linked, head matching. */
export async function verifyChain(
  chainId: string,
  orgId: string | null,
  chain: AuditChainStore,
): Promise<ChainVerification> {
  const problems: string[] = [];
  const note = (p: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let entries = 0;
  for (;;) {
    const page = await chain.findChain(expectedSeq - 1, VERIFY_PAGE);
    for (const e of page) {
      entries++;
      if (e.seq !== expectedSeq) note(`entries ${expectedSeq}..${e.seq - 1} are missing`);
      if (e.prevHash !== prevHash) note(`entry ${e.seq} does not link to the entry before it`);
      const { hash, ...rest } = e;
      if (hashEntry(rest) !== hash) note(`entry ${e.seq} was altered (its hash does not match its content)`);
      expectedSeq = e.seq + 1;
      prevHash = hash;
    }
    if (page.length < VERIFY_PAGE) break;
  }
  const head = await chain.findHead();
  const lastSeq = expectedSeq - 1;
  if (head === undefined && lastSeq > 0) note('the chain head is missing');
  if (head !== undefined && (head.seq !== lastSeq || head.hash !== prevHash)) {
    note(
      head.seq > lastSeq
        ? `entries ${lastSeq + 1}..${head.seq} are missing from the end`
        : `the chain head (seq ${head.seq}) does not match the last entry (seq ${lastSeq})`,
    );
  }
  return { chainId, orgId, entries, ok: problems.length === 0, problems };
}
