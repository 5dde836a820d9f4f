/**
 * A byte cache for fast, disposable data (embeddings, lookups). Never the only
 * copy of anything: a miss must always be recoverable. Implementations:
 * `LocalCache` (in-process LRU, the embedded default) and `ValkeyCache`.
 */
export interface Cache {
  readonly kind: 'local' | 'valkey';
  getMany(keys: readonly string[]): Promise<Array<Buffer | undefined>>;
  setMany(entries: ReadonlyArray<readonly [string, Buffer]>, ttlSeconds: number): Promise<void>;
  /**
   * Stores `key` only if it is absent (or expired); true when this call stored it.
   * Atomic across replicas on Valkey — the DPoP replay cache relies on it.
   */
  setIfAbsent(key: string, value: Buffer, ttlSeconds: number): Promise<boolean>;
  delete(key: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
