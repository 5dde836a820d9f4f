import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { errors } from '../../errors.ts';
import { EMBED_MAX_BATCH, EMBED_MAX_CHARS, type Embedder } from '../../ports/embedder.ts';
import type { RepoWorkspace } from '../../ports/repo-workspace.ts';
import type { SystemStore, TenantDb } from '../../ports/tenant-db.ts';
import type { NewJob } from '../jobs/job.types.ts';
import type { JobHandler } from '../jobs/job.worker.ts';
import { chunkFile, type ChunkDraft } from './code-chunks.ts';
import { INDEX_CODE_CHUNKS, type IndexCodeChunksPayload } from './code-search.types.ts';

/** Files read and chunked per write transaction. */
const FILE_BATCH = 50;
/** Chunks read per round of embedding. */
const EMBED_ROUND = 256;
/** Chunks (or vectors) written by a run above which planner statistics are refreshed, as the indexer does for the graph. */
const ANALYZE_AFTER_CHUNKS = 50;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface CodeChunkIndexerDeps {
  readonly tenantDb: TenantDb;
  readonly workspace: RepoWorkspace;
  readonly embedder: Embedder;
  readonly jobMaxAttempts: number;
  /** Told when the embedder fails: the chunks stay searchable lexically and are embedded by a later run. */
  readonly onEmbedError?: (e: unknown) => void;
  /** Planner statistics, refreshed after a run wrote many chunks or vectors (see {@link ANALYZE_AFTER_CHUNKS}). */
  readonly statistics?: Pick<SystemStore, 'analyzeCodeChunks'> | undefined;
  /** Reclaims replaced chunks and vectors on a store without autovacuum (the embedded one), as the indexer does. */
  readonly vacuum?: Pick<SystemStore, 'vacuum'> | undefined;
}

/** The tables a chunk run rewrites. */
const CHUNK_TABLES: readonly string[] = ['code_chunks', 'code_chunk_embeddings'];

export interface ChunkRunStats {
  /** Files (re-)chunked. */
  readonly files: number;
  readonly chunks: number;
  /** Files skipped because their content changed since they were indexed (the next index run re-chunks them). */
  readonly skipped: number;
  readonly embedded: number;
  /** True when the embedder failed and vectors were left for later. */
  readonly embedFailed: boolean;
}

/** The job that (re)chunks and embeds a repository's changed files. */
export const indexCodeChunksJob = (repoId: string, maxAttempts: number): NewJob => ({
  id: uuidv7(),
  kind: INDEX_CODE_CHUNKS,
  payload: { repoId } satisfies IndexCodeChunksPayload,
  maxAttempts,
});

/**
 * Runs `index_code_chunks` jobs, queued after every successful `index_repo`
 * run: re-chunks only the files whose chunks were cut from other content
 * (or whose symbols were replaced), reading them from the tree as last
 * checked out, and checking each against the hash the index holds — a file
 * changed since is left for the next run. Then embeds the repository's
 * chunks that have no current vector, in batches, outside any transaction.
 * When the embedder is down the job still succeeds: lexical search works at
 * once and the vectors come with a later run.
 */
export class CodeChunkIndexer {
  constructor(private readonly deps: CodeChunkIndexerDeps) {}

  get kind(): string {
    return INDEX_CODE_CHUNKS;
  }

  handler(): JobHandler {
    return (job) => {
      const repoId = job.payload.repoId;
      if (typeof repoId !== 'string') throw errors.validation('index_code_chunks needs a repoId');
      return this.run(job.orgId, repoId).then(() => undefined);
    };
  }

  /** Wraps the `index_repo` handler: after a run that succeeded, queue the repository's chunking. */
  afterIndexing(indexRepo: JobHandler): JobHandler {
    return async (job) => {
      await indexRepo(job);
      const repoId = job.payload.repoId;
      if (typeof repoId !== 'string') return;
      await this.deps.tenantDb.withTenant(job.orgId, ({ jobs }) =>
        jobs.insertJob(indexCodeChunksJob(repoId, this.deps.jobMaxAttempts)),
      );
    };
  }

  async run(orgId: string, repoId: string): Promise<ChunkRunStats> {
    const { tenantDb, workspace } = this.deps;
    const repo = await tenantDb.withTenant(orgId, ({ code }) => code.findRepo(repoId));
    if (repo === undefined) return { files: 0, chunks: 0, skipped: 0, embedded: 0, embedFailed: false };
    let files = 0;
    let chunks = 0;
    let skipped = 0;
    const decoder = new TextDecoder('utf-8');
    for (let after = ''; ;) {
      const stale = await tenantDb.withTenant(orgId, ({ codeChunks }) =>
        codeChunks.findStaleFiles(repoId, after, FILE_BATCH),
      );
      if (stale.length === 0) break;
      after = stale.at(-1)?.path ?? after;
      const symbols = await tenantDb.withTenant(orgId, ({ codeChunks }) =>
        codeChunks.findFileSymbols(stale.map((f) => f.id)),
      );
      const drafts: Array<{ file: (typeof stale)[number]; chunks: ChunkDraft[] }> = [];
      for (const f of stale) {
        const bytes = await workspace.readTreeFile(orgId, repo, f.path);
        if (bytes === undefined || sha256(bytes) !== f.contentHash) {
          skipped += 1;
          continue;
        }
        const source = decoder.decode(bytes);
        drafts.push({
          file: f,
          chunks: chunkFile({ path: f.path, language: f.language, source }, symbols.get(f.id) ?? []),
        });
        await yieldToLoop();
      }
      await tenantDb.withTenant(orgId, async ({ codeChunks }) => {
        for (const d of drafts) {
          if (await codeChunks.replaceFileChunks(repoId, d.file, d.chunks)) {
            files += 1;
            chunks += d.chunks.length;
          } else {
            skipped += 1;
          }
        }
      });
    }
    const { embedded, failed } = await this.embed(orgId, repoId);
    // Searches need the statistics to read their top hits off the BM25 and HNSW indexes.
    if (chunks + embedded >= ANALYZE_AFTER_CHUNKS) await this.deps.statistics?.analyzeCodeChunks();
    await this.deps.vacuum?.vacuum(CHUNK_TABLES);
    return { files, chunks, skipped, embedded, embedFailed: failed };
  }

  /** Embeds chunks without a current vector; stops (leaving the rest for later) when the embedder fails. */
  private async embed(orgId: string, repoId: string): Promise<{ embedded: number; failed: boolean }> {
    const { tenantDb, embedder } = this.deps;
    let embedded = 0;
    // Each chunk is tried once per run: one rewritten while it was embedded waits for the next run.
    for (let after: string | undefined; ;) {
      const missing = await tenantDb.withTenant(orgId, ({ codeChunks }) =>
        codeChunks.findMissingEmbeddings(repoId, embedder.model, EMBED_ROUND, after),
      );
      if (missing.length === 0) return { embedded, failed: false };
      after = missing.at(-1)?.id;
      for (let i = 0; i < missing.length; i += EMBED_MAX_BATCH) {
        const batch = missing.slice(i, i + EMBED_MAX_BATCH);
        let vectors: Float32Array[];
        try {
          vectors = await embedder.embed(batch.map((m) => m.text.slice(0, EMBED_MAX_CHARS)));
        } catch (e) {
          this.deps.onEmbedError?.(e);
          return { embedded, failed: true };
        }
        const rows = batch.flatMap((m, j) => {
          const vector = vectors[j];
          return vector === undefined
            ? []
            : [{ chunkId: m.id, model: embedder.model, contentHash: m.contentHash, vector }];
        });
        await tenantDb.withTenant(orgId, ({ codeChunks }) => codeChunks.upsertEmbeddings(rows));
        embedded += rows.length;
      }
    }
  }
}
