import { sql, type Selectable, type Transaction } from 'kysely';
import type { AuditEntry, AuditFilter, AuditHead, AuditOutcome } from '../../domain/audit/audit.types.ts';
import type { AuditChainStore, AuditStore } from '../../ports/tenant-db.ts';
import type { AuditLogTable, DB } from './schema.ts';

function toEntry(r: Selectable<AuditLogTable>): AuditEntry {
  return {
    chainId: r.chain_id,
    seq: Number(r.seq),
    orgId: r.org_id,
    id: r.id,
    at: r.at,
    actorType: r.actor_type,
    actorId: r.actor_id,
    authMethod: r.auth_method,
    action: r.action,
    resourceType: r.resource_type,
    resourceId: r.resource_id,
    outcome: r.outcome as AuditOutcome,
    status: r.status,
    ip: r.ip,
    userAgent: r.user_agent,
    requestId: r.request_id,
    details: r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/**
 * One audit chain inside a transaction: an org's (as engram_app, under RLS)
 * or the system chain (as engram_system). The head row is the chain's lock.
 */
export class PgAuditStore implements AuditStore, AuditChainStore {
  constructor(
    private readonly tx: Transaction<DB>,
    private readonly chainId: string,
    private readonly orgId: string | null,
  ) {}

  async appendEntry(build: (head: AuditHead | undefined) => AuditEntry): Promise<AuditEntry> {
    const lockHead = () =>
      this.tx.selectFrom('audit_heads').selectAll().where('chain_id', '=', this.chainId).forUpdate().executeTakeFirst();
    let head = await lockHead();
    if (head === undefined) {
      await this.tx
        .insertInto('audit_heads')
        .values({ chain_id: this.chainId, org_id: this.orgId, seq: 0, hash: '' })
        .onConflict((oc) => oc.column('chain_id').doNothing())
        .execute();
      head = await lockHead();
    }
    const seq = Number(head?.seq ?? 0);
    const entry = build(
      seq === 0 || head === undefined ? undefined : { chainId: this.chainId, orgId: this.orgId, seq, hash: head.hash },
    );
    if (entry.chainId !== this.chainId || entry.seq !== seq + 1) {
      throw new Error(`audit entry ${entry.chainId}#${entry.seq} does not extend ${this.chainId}#${seq}`);
    }
    await this.tx
      .insertInto('audit_log')
      .values({
        chain_id: entry.chainId,
        seq: entry.seq,
        org_id: entry.orgId,
        id: entry.id,
        at: entry.at,
        actor_type: entry.actorType,
        actor_id: entry.actorId,
        auth_method: entry.authMethod,
        action: entry.action,
        resource_type: entry.resourceType,
        resource_id: entry.resourceId,
        outcome: entry.outcome,
        status: entry.status,
        ip: entry.ip,
        user_agent: entry.userAgent,
        request_id: entry.requestId,
        details: JSON.stringify(entry.details),
        prev_hash: entry.prevHash,
        hash: entry.hash,
      })
      .execute();
    await this.tx
      .updateTable('audit_heads')
      .set({ seq: entry.seq, hash: entry.hash, updated_at: sql<Date>`now()` })
      .where('chain_id', '=', this.chainId)
      .execute();
    return entry;
  }

  async findHead(): Promise<AuditHead | undefined> {
    const r = await this.tx
      .selectFrom('audit_heads')
      .selectAll()
      .where('chain_id', '=', this.chainId)
      .executeTakeFirst();
    if (r === undefined || Number(r.seq) === 0) return undefined;
    return { chainId: r.chain_id, orgId: r.org_id, seq: Number(r.seq), hash: r.hash };
  }

  async findChain(afterSeq: number, limit: number): Promise<AuditEntry[]> {
    const rows = await this.tx
      .selectFrom('audit_log')
      .selectAll()
      .where('chain_id', '=', this.chainId)
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map(toEntry);
  }

  async findEntries(filter: AuditFilter, limit: number, beforeSeq: number | null): Promise<AuditEntry[]> {
    let q = this.tx.selectFrom('audit_log').selectAll().where('chain_id', '=', this.chainId);
    if (beforeSeq !== null) q = q.where('seq', '<', beforeSeq);
    if (filter.actorId !== undefined) q = q.where('actor_id', '=', filter.actorId);
    if (filter.action !== undefined) q = q.where('action', '=', filter.action);
    if (filter.resourceType !== undefined) q = q.where('resource_type', '=', filter.resourceType);
    if (filter.resourceId !== undefined) q = q.where('resource_id', '=', filter.resourceId);
    if (filter.outcome !== undefined) q = q.where('outcome', '=', filter.outcome);
    if (filter.since !== undefined) q = q.where('at', '>=', filter.since);
    if (filter.until !== undefined) q = q.where('at', '<', filter.until);
    const rows = await q.orderBy('seq', 'desc').limit(limit).execute();
    return rows.map(toEntry);
  }
}
