/** How a request ended, as the audit log files it. */
export type AuditOutcome = 'success' | 'denied' | 'failure' | 'error';

/** What happened: the part of an audit entry its author supplies. */
export interface AuditEvent {
  /** The org the event belongs to; null when unknown (e.g. an unrecognised credential). */
  readonly orgId: string | null;
  readonly actorType: string;
  readonly actorId: string | null;
  readonly authMethod: string | null;
  /** Dotted verb, e.g. `memory.create`, `auth.authenticate`. */
  readonly action: string;
  readonly resourceType: string | null;
  readonly resourceId: string | null;
  readonly outcome: AuditOutcome;
  readonly status: number | null;
  readonly ip: string | null;
  readonly userAgent: string | null;
  readonly requestId: string | null;
  readonly details: Readonly<Record<string, unknown>>;
}

/** A stored entry: the event plus its place in its chain. */
export interface AuditEntry extends AuditEvent {
  /** The org id, or `SYSTEM_CHAIN` for events with no org. */
  readonly chainId: string;
  readonly seq: number;
  readonly id: string;
  readonly at: Date;
  readonly prevHash: string;
  readonly hash: string;
}

/** The latest link of a chain. */
export interface AuditHead {
  readonly chainId: string;
  readonly orgId: string | null;
  readonly seq: number;
  readonly hash: string;
}

export interface AuditFilter {
  readonly actorId?: string | undefined;
  readonly action?: string | undefined;
  readonly resourceType?: string | undefined;
  readonly resourceId?: string | undefined;
  readonly outcome?: AuditOutcome | undefined;
  readonly since?: Date | undefined;
  readonly until?: Date | undefined;
}

export interface ChainVerification {
  readonly chainId: string;
  readonly orgId: string | null;
  readonly entries: number;
  readonly ok: boolean;
  /** First problems found (seq gaps, hash mismatches, a head that does not match). */
  readonly problems: readonly string[];
}

export const SYSTEM_CHAIN = '00000000-0000-0000-0000-000000000000';
export const GENESIS_HASH = '0'.repeat(64);
