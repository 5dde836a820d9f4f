/** Who a memory is about or for. All fields are optional, free-form ids chosen by the caller. */
export interface MemoryScope {
  readonly user?: string | undefined;
  readonly agent?: string | undefined;
  readonly project?: string | undefined;
  readonly session?: string | undefined;
}

export const SCOPE_FIELDS = ['user', 'agent', 'project', 'session'] as const;

export interface Memory {
  readonly id: string;
  readonly scope: MemoryScope;
  readonly content: string;
  readonly contentHash: string;
  readonly metadata: Record<string, unknown>;
  readonly tags: readonly string[];
  readonly source: string | null;
  readonly version: number;
  readonly validFrom: Date | null;
  readonly validTo: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface MemoryVersion {
  readonly version: number;
  readonly scope: MemoryScope;
  readonly content: string;
  readonly metadata: Record<string, unknown>;
  readonly tags: readonly string[];
  readonly source: string | null;
  readonly validFrom: Date | null;
  readonly validTo: Date | null;
  /** When this version became current. */
  readonly writtenAt: Date;
  /** When it was replaced; null for the current version. */
  readonly supersededAt: Date | null;
}

export interface NewMemory {
  readonly content: string;
  readonly scope?: MemoryScope | undefined;
  readonly metadata?: Record<string, unknown> | undefined;
  readonly tags?: readonly string[] | undefined;
  readonly source?: string | undefined;
  readonly validFrom?: Date | undefined;
  readonly validTo?: Date | undefined;
}

/** Fields an update may change. `null` clears an optional field. */
export interface MemoryPatch {
  readonly content?: string | undefined;
  readonly metadata?: Record<string, unknown> | undefined;
  readonly tags?: readonly string[] | undefined;
  readonly source?: string | null | undefined;
  readonly validFrom?: Date | null | undefined;
  readonly validTo?: Date | null | undefined;
}

export interface MemoryFilter {
  readonly scope?: MemoryScope | undefined;
  /** Every listed tag must be present. */
  readonly tags?: readonly string[] | undefined;
  /** JSON containment: the memory's metadata must contain this object. */
  readonly metadata?: Record<string, unknown> | undefined;
  readonly createdAfter?: Date | undefined;
  readonly createdBefore?: Date | undefined;
  /** Only memories valid at this instant (valid_from ≤ t < valid_to, open ends allowed). */
  readonly validAt?: Date | undefined;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Opaque cursor for the next page; null at the end. */
  readonly nextCursor: string | null;
}
