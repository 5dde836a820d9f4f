import { performance } from 'node:perf_hooks';

/** HTTP calls to the server under test and a closed-loop load runner. */

export interface CallResult {
  readonly status: number;
  /** Milliseconds from sending the request to having read the whole body. */
  readonly ms: number;
  readonly body: string;
}

export async function postJson(url: string, apiKey: string, body: unknown): Promise<CallResult> {
  const payload = JSON.stringify(body);
  const t0 = performance.now();
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: payload,
    });
    const text = await res.text();
    return { status: res.status, ms: performance.now() - t0, body: text };
  } catch (e) {
    // A network error counts like an HTTP error: status 0.
    return { status: 0, ms: performance.now() - t0, body: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * Runs task(0..total-1) with `concurrency` workers pulling the next index as
 * soon as they finish one (closed loop), and returns the wall time.
 */
export async function runPool(
  total: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<{ wallMs: number }> {
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, total)) }, worker));
  return { wallMs: performance.now() - t0 };
}

/** Calls `report` at every `stepPct` percent of `total` completed items. */
export function progress(total: number, stepPct: number, report: (done: number) => void): () => void {
  const step = Math.max(1, Math.floor((total * stepPct) / 100));
  let done = 0;
  return () => {
    done += 1;
    if (done % step === 0 || done === total) report(done);
  };
}
