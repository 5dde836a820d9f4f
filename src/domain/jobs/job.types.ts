/** Where a job is in its life: queued → running → succeeded, back to queued after a failure, or dead. */
export const JOB_STATES = ['queued', 'running', 'succeeded', 'dead'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** A unit of background work of one org, stored durably in the job queue. */
export interface Job {
  readonly id: string;
  readonly orgId: string;
  readonly kind: string;
  readonly payload: Record<string, unknown>;
  readonly state: JobState;
  /** Runs started so far (a run counts when it is claimed, so a crash mid-run counts too). */
  readonly attempts: number;
  readonly maxAttempts: number;
  /** When a queued job becomes due. */
  readonly runAt: Date;
  /** The lease of a running job; null otherwise. */
  readonly lockedUntil: Date | null;
  /** The worker holding a running job; null otherwise. */
  readonly lockedBy: string | null;
  /** A client-safe description of the latest failure, kept after a later success. */
  readonly lastError: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** When it succeeded or died. */
  readonly finishedAt: Date | null;
}

export interface NewJob {
  /** UUIDv7: jobs are listed in id (creation) order. */
  readonly id: string;
  readonly kind: string;
  readonly payload: Record<string, unknown>;
  readonly maxAttempts: number;
}

export interface JobFilter {
  readonly state?: JobState | undefined;
  readonly kind?: string | undefined;
}

/** Queue depth per kind and state, for metrics; `oldestCreatedAgeSeconds` only for unfinished states. */
export interface JobStats {
  readonly kind: string;
  readonly state: JobState;
  readonly count: number;
  readonly oldestAgeSeconds: number | null;
}

/** Embeds one memory with the current model: `{ memoryId }`. */
export const EMBED_MEMORY = 'embed_memory';
export interface EmbedMemoryPayload {
  readonly memoryId: string;
}

/**
 * Embeds a batch of memories with the current model: `{ memoryIds }` (at
 * most {@link EMBED_MEMORIES_MAX_IDS}). Bulk writes enqueue one per chunk
 * instead of one `embed_memory` per memory.
 */
export const EMBED_MEMORIES = 'embed_memories';
export interface EmbedMemoriesPayload {
  readonly memoryIds: readonly string[];
}
/** Memories per `embed_memories` job: four embedder round trips of 32, one short write. */
export const EMBED_MEMORIES_MAX_IDS = 128;
