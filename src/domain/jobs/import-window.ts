/**
 * Whether a bulk import is streaming in, so that background embedding can
 * wait for it on the embedded store. PGlite is one session, and there an
 * HNSW insert costs about 6 ms a vector: embedding batches while later ones
 * arrive takes half the session from the import. So while a batch is being
 * written, and until `quietMs` after the last one (the gap in which a client
 * sends the next), `embed_memories` jobs are not claimed — but never for more
 * than `maxYieldMs` in a row, so an endless stream cannot starve them. The
 * vectors are ready about as soon either way: the work is the same on one
 * session. PostgreSQL runs both side by side, so the window is disabled there.
 */
export class ImportWindow {
  private inFlight = 0;
  private firstAt = Number.NEGATIVE_INFINITY;
  private lastAt = Number.NEGATIVE_INFINITY;
  private readonly quietMs: number;
  private readonly maxYieldMs: number;

  constructor(
    private readonly opts: {
      readonly enabled: boolean;
      readonly quietMs?: number;
      readonly maxYieldMs?: number;
      readonly now?: () => number;
    },
  ) {
    this.quietMs = opts.quietMs ?? 1_000;
    this.maxYieldMs = opts.maxYieldMs ?? 60_000;
  }

  /** A bulk write starts. */
  started(): void {
    const now = this.now();
    if (this.inFlight === 0 && now - this.lastAt >= this.quietMs) this.firstAt = now;
    this.inFlight += 1;
  }

  /** A bulk write ended (committed or failed). */
  ended(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.lastAt = this.now();
  }

  /** True while background embedding should wait for the import. */
  active(): boolean {
    const now = this.now();
    const importing = this.inFlight > 0 || now - this.lastAt < this.quietMs;
    return this.opts.enabled && importing && now - this.firstAt < this.maxYieldMs;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
