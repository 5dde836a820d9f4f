import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { Command, type Option } from 'commander';
import type { z } from 'zod';
import { REMEMBER_MANY_MAX } from '../domain/memory/memory.service.ts';
import { AppError, isAppError } from '../errors.ts';
import { createMemoryBody, presentBatch } from '../http/schemas.ts';
import { auditCli, type Target } from './target.ts';

/**
 * `engram import <file.jsonl>`: bulk ingestion from JSON Lines, one memory
 * per line (each line a `POST /v1/memories` body), in batches through
 * `POST /v1/memories/batch` (or the same service method on the store
 * directly).
 *
 * Resumable: after every committed batch, `<file>.progress` records the
 * last line done and a SHA-256 of the lines up to it; a rerun continues
 * after that line if the file still starts with the same lines (appending
 * to the file is fine), and refuses if they changed. `--from-line N`
 * starts at line N whatever the progress file says. Re-sending a line is
 * harmless anyway: an exact duplicate in the same scope is not stored twice.
 *
 * Lines that are not valid (not JSON, not a valid body, refused by the
 * server) are reported with their line number and skipped; the command
 * exits 1 at the end if there was any.
 */

type BatchJson = ReturnType<typeof presentBatch>;

interface Item {
  readonly line: number;
  /** The line's JSON, as sent over HTTP. */
  readonly raw: unknown;
  /** Validated by the REST body schema (dates parsed), for the direct call. */
  readonly body: z.output<typeof createMemoryBody>;
}

interface Progress {
  readonly version: 1;
  /** Lines 1..line are done (stored, deduplicated or reported as bad). */
  readonly line: number;
  /** SHA-256 of those lines, each followed by "\n": detects a file changed under the progress file. */
  readonly sha256: string;
  readonly updatedAt: string;
}

/** Keeps each request well under the server's default BATCH_BODY_LIMIT_BYTES (16 MiB). */
const MAX_BATCH_BYTES = 8 * 1_048_576;
const MAX_RATE_LIMIT_WAIT_S = 60;

const err = (s: string): void => {
  process.stderr.write(s);
};

export const progressFileOf = (file: string): string => `${file}.progress`;

function readProgress(file: string): Progress | undefined {
  const p = progressFileOf(file);
  if (!existsSync(p)) return undefined;
  try {
    const v = JSON.parse(readFileSync(p, 'utf8')) as Partial<Progress>;
    if (v.version === 1 && Number.isInteger(v.line) && typeof v.sha256 === 'string') return v as Progress;
  } catch {
    // fall through
  }
  throw new AppError(
    'VALIDATION_FAILED',
    `${p} is not a progress file of engram import; delete it or pass --from-line`,
  );
}

function writeProgress(file: string, line: number, hash: Hash): void {
  const p = progressFileOf(file);
  const body: Progress = { version: 1, line, sha256: hash.copy().digest('hex'), updatedAt: new Date().toISOString() };
  // Written then renamed: a crash leaves the old progress or the new one, never half of one.
  writeFileSync(`${p}.tmp`, `${JSON.stringify(body)}\n`);
  renameSync(`${p}.tmp`, p);
}

async function countLines(file: string): Promise<number> {
  let n = 0;
  for await (const _ of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) n += 1;
  return n;
}

/** A short reason from a zod error: the first problems, each with its path. */
function zodReason(issues: ReadonlyArray<{ path: readonly PropertyKey[]; message: string }>): string {
  return issues
    .slice(0, 3)
    .map((i) => (i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
}

/** Progress on stderr: one redrawn bar on a terminal, a line every few seconds otherwise. */
function progressBar(total: number, startLine: number) {
  const tty = process.stderr.isTTY;
  const t0 = performance.now();
  let lastDraw = 0;
  let lastLine = '';
  return (done: number, final = false) => {
    const now = performance.now();
    if (!final && now - lastDraw < (tty ? 100 : 2_000)) return;
    lastDraw = now;
    const seconds = (now - t0) / 1000;
    const rate = seconds > 0 ? (done - startLine + 1) / seconds : 0;
    const pct = total === 0 ? 100 : Math.floor((100 * done) / total);
    const width = 24;
    const filled = Math.round((width * pct) / 100);
    const line =
      `import [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} lines ${pct}% ` +
      `${Math.round(rate)} lines/s`;
    if (!tty && line === lastLine) return;
    lastLine = line;
    err(tty ? `\r\x1b[2K${line}${final ? '\n' : ''}` : `${line}\n`);
  };
}

/** The item indices a 400 names (`/items/3/content` → 3). */
function indicesOf(details: unknown): Set<number> {
  const out = new Set<number>();
  const issues = (details as { issues?: Array<{ path?: unknown }> } | undefined)?.issues ?? [];
  for (const i of issues) {
    const m = typeof i.path === 'string' ? /^\/items\/(\d+)/.exec(i.path) : null;
    if (m?.[1] !== undefined) out.add(Number(m[1]));
  }
  return out;
}

export function importCommand(
  onTarget: (org: string, fn: (t: Target) => Promise<void>) => Promise<void>,
  orgOpt: Option,
): Command {
  return new Command('import')
    .description(
      'Import memories from a JSON Lines file (one POST /v1/memories body per line) in batches; resumable through <file>.progress',
    )
    .argument('<file>', 'the .jsonl file')
    .option('--batch-size <n>', `memories per request (1–${REMEMBER_MANY_MAX})`, String(REMEMBER_MANY_MAX))
    .option('--from-line <n>', 'start at this line (1 = the beginning), whatever <file>.progress says')
    .addOption(orgOpt)
    .action(async (file: string, o: { batchSize: string; fromLine?: string; org: string }) => {
      let batchSize = Number(o.batchSize);
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > REMEMBER_MANY_MAX) {
        throw new AppError('VALIDATION_FAILED', `--batch-size takes a whole number from 1 to ${REMEMBER_MANY_MAX}`);
      }
      const fromLine = o.fromLine === undefined ? undefined : Number(o.fromLine);
      if (fromLine !== undefined && (!Number.isInteger(fromLine) || fromLine < 1)) {
        throw new AppError('VALIDATION_FAILED', '--from-line takes a line number from 1');
      }
      if (!existsSync(file)) throw new AppError('NOT_FOUND', `No file ${file}`);
      const saved = fromLine === undefined ? readProgress(file) : undefined;
      const start = fromLine ?? (saved === undefined ? 1 : saved.line + 1);
      const total = await countLines(file);

      await onTarget(o.org, async (t) => {
        const counts = { created: 0, existing: 0, failed: 0, empty: 0 };
        const bad = (line: number, reason: string) => {
          counts.failed += 1;
          err(`${process.stderr.isTTY ? '\r\x1b[2K' : ''}line ${line}: ${reason}\n`);
        };
        const draw = progressBar(total, start);

        /** Sends items (retrying on 429, splitting on 413); reports each item's outcome. */
        const send = async (items: readonly Item[]): Promise<void> => {
          if (items.length === 0) return;
          let r: BatchJson;
          try {
            if (t.kind === 'http') {
              r = await t.call<BatchJson>('POST', '/v1/memories/batch', { items: items.map((i) => i.raw) });
            } else {
              r = presentBatch(
                await t.engram.memories.rememberMany(
                  t.ctx,
                  items.map((i) => i.body),
                ),
              );
              await auditCli(t.engram, t.ctx.orgId, 'memory.import', null, {
                items: r.results.length,
                created: r.created,
                existing: r.existing,
                failed: r.failed,
              });
            }
          } catch (e) {
            if (!isAppError(e)) throw e;
            const details = e.details as { retryAfterSeconds?: number; maxItems?: number } | undefined;
            if (e.code === 'RATE_LIMITED') {
              const wait = Math.min(MAX_RATE_LIMIT_WAIT_S, Math.max(1, details?.retryAfterSeconds ?? 1));
              await new Promise((resolve) => setTimeout(resolve, wait * 1000));
              return send(items);
            }
            if (e.code === 'PAYLOAD_TOO_LARGE' && items.length > 1) {
              // The org's import burst (maxItems) or the body limit: smaller batches from now on.
              const size = Math.max(1, Math.min(details?.maxItems ?? Math.ceil(items.length / 2), items.length - 1));
              batchSize = Math.min(batchSize, size);
              for (let i = 0; i < items.length; i += size) await send(items.slice(i, i + size));
              return;
            }
            if (e.code === 'PAYLOAD_TOO_LARGE' || e.code === 'VALIDATION_FAILED') {
              // A server whose limits differ from this CLI's: the items it names are bad, the rest go again.
              const named = items.length === 1 ? new Set([0]) : indicesOf(e.details);
              if (named.size === 0) throw e;
              for (const i of named) {
                const item = items[i];
                if (item !== undefined) bad(item.line, `${e.code}: ${e.message}`);
              }
              return send(items.filter((_, i) => !named.has(i)));
            }
            throw e;
          }
          for (const res of r.results) {
            const item = items[res.index];
            if (item === undefined) continue;
            if (res.status === 'created') counts.created += 1;
            else if (res.status === 'existing') counts.existing += 1;
            else bad(item.line, `${res.error?.code ?? 'INTERNAL'}: ${res.error?.message ?? 'not stored'}`);
          }
        };

        const hash = createHash('sha256');
        let batch: Item[] = [];
        let bytes = 0;
        let line = 0;
        let lastSent = start - 1;
        const flush = async () => {
          await send(batch);
          batch = [];
          bytes = 0;
          // Committed up to here: every line so far is stored, deduplicated or reported.
          writeProgress(file, line, hash);
          lastSent = line;
          draw(line);
        };

        try {
          const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
          for await (const rawLine of lines) {
            line += 1;
            hash.update(`${rawLine}\n`);
            if (line < start) {
              if (saved !== undefined && line === saved.line && hash.copy().digest('hex') !== saved.sha256) {
                throw new AppError(
                  'CONFLICT',
                  `${file} changed in its first ${saved.line} lines since the last import (${progressFileOf(file)}); ` +
                    'pass --from-line 1 to import it again (memories already stored are not duplicated)',
                );
              }
              continue;
            }
            const text = line === 1 ? rawLine.replace(/^\uFEFF/, '') : rawLine;
            if (text.trim() === '') {
              counts.empty += 1;
              continue;
            }
            let raw: unknown;
            try {
              raw = JSON.parse(text);
            } catch {
              bad(line, 'not valid JSON');
              continue;
            }
            // The REST body schema itself: a line is valid here exactly when the server would accept it.
            const parsed = createMemoryBody.safeParse(raw);
            if (!parsed.success) {
              bad(line, `VALIDATION_FAILED: ${zodReason(parsed.error.issues)}`);
              continue;
            }
            batch.push({ line, raw, body: parsed.data });
            bytes += Buffer.byteLength(text);
            if (batch.length >= batchSize || bytes >= MAX_BATCH_BYTES) await flush();
          }
          if (saved !== undefined && line < saved.line) {
            throw new AppError(
              'CONFLICT',
              `${file} has ${line} lines but ${progressFileOf(file)} says ${saved.line} were imported; pass --from-line 1`,
            );
          }
          if (line >= start || batch.length > 0) await flush();
        } catch (e) {
          if (process.stderr.isTTY) err('\n');
          if (lastSent >= start) err(`import stopped; lines up to ${lastSent} are done. Rerun to continue.\n`);
          throw e;
        }
        draw(line, true);
        process.stdout.write(
          `${JSON.stringify({
            file,
            lines: line,
            fromLine: start,
            created: counts.created,
            existing: counts.existing,
            failed: counts.failed,
            empty: counts.empty,
          })}\n`,
        );
        if (t.kind === 'direct' && counts.created > 0) {
          err('vectors are computed by the server’s job worker when it runs; lexical search finds them now\n');
        }
        if (counts.failed > 0) {
          err(`${counts.failed} line(s) not imported (see above)\n`);
          process.exitCode = 1;
        }
      });
    });
}
