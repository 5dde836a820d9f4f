import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  DependencyPolicy,
  isBrokenCircuit,
  isPolicyTimeout,
  waitForDependency,
  type BreakerState,
} from './resilience.ts';

class Outage extends Error {}
class BadInput extends Error {}

const policy = (over: Partial<ConstructorParameters<typeof DependencyPolicy>[0]> = {}) =>
  new DependencyPolicy({
    name: 'test',
    timeoutMs: 0,
    retries: 0,
    breakerThreshold: 3,
    halfOpenAfterMs: 60_000,
    isFailure: (e) => e instanceof Outage,
    backoff: { initialDelayMs: 1, maxDelayMs: 2 },
    ...over,
  });

const fail = (e: Error) => () => Promise.reject(e);

describe(DependencyPolicy.name, () => {
  describe('circuit breaker', () => {
    it('opens after the threshold of consecutive failures and then fails fast without calling', async () => {
      const p = policy();
      const transitions: Array<[BreakerState, BreakerState]> = [];
      p.onTransition((to, from) => transitions.push([to, from]));
      for (let i = 0; i < 3; i++) await expect(p.execute(fail(new Outage('down')))).rejects.toThrow('down');
      expect(p.state).toBe('open');
      let called = false;
      const err = await p
        .execute(async () => {
          called = true;
        })
        .catch((e: unknown) => e);
      expect(isBrokenCircuit(err)).toBe(true);
      expect(called).toBe(false);
      expect(transitions).toEqual([['open', 'closed']]);
      expect(p.snapshot()).toMatchObject({ state: 'open', since: expect.any(String), threshold: 3 });
      expect(p.retryAfterSeconds()).toBeGreaterThanOrEqual(59);
    });

    it('does not count errors that are not failures of the dependency', async () => {
      const p = policy();
      for (let i = 0; i < 5; i++) await expect(p.execute(fail(new BadInput('constraint')))).rejects.toThrow(BadInput);
      expect(p.state).toBe('closed');
    });

    it('resets the count on success: only consecutive failures open it', async () => {
      const p = policy();
      for (let i = 0; i < 2; i++) await expect(p.execute(fail(new Outage('x')))).rejects.toThrow();
      await p.execute(async () => 'ok');
      for (let i = 0; i < 2; i++) await expect(p.execute(fail(new Outage('x')))).rejects.toThrow();
      expect(p.state).toBe('closed');
    });

    it('half-opens after the pause, closes on a successful probe and reports each transition', async () => {
      const p = policy({ halfOpenAfterMs: 50, breakerThreshold: 1 });
      const seen: BreakerState[] = [];
      p.onTransition((to) => seen.push(to));
      await expect(p.execute(fail(new Outage('x')))).rejects.toThrow();
      expect(p.state).toBe('open');
      await sleep(80);
      await expect(p.execute(async () => 'probe')).resolves.toBe('probe');
      expect(p.state).toBe('closed');
      expect(seen).toEqual(['open', 'half-open', 'closed']);
    });

    it('reopens when the half-open probe fails', async () => {
      const p = policy({ halfOpenAfterMs: 50, breakerThreshold: 1 });
      await expect(p.execute(fail(new Outage('x')))).rejects.toThrow();
      await sleep(80);
      await expect(p.execute(fail(new Outage('still down')))).rejects.toThrow('still down');
      expect(p.state).toBe('open');
    });
  });

  describe('retries', () => {
    it('retries failures of idempotent calls only', async () => {
      const p = policy({ retries: 2, breakerThreshold: 100 });
      let calls = 0;
      const flaky = async () => {
        calls += 1;
        if (calls < 3) throw new Outage('blip');
        return calls;
      };
      await expect(p.execute(flaky, { idempotent: true })).resolves.toBe(3);
      calls = 0;
      await expect(p.execute(flaky)).rejects.toThrow('blip');
      expect(calls).toBe(1);
    });

    it('does not retry errors that are not failures, nor those marked not retryable', async () => {
      const p = policy({ retries: 3, isRetryable: (e) => e instanceof Outage && e.message !== 'slow' });
      let calls = 0;
      await expect(
        p.execute(
          async () => {
            calls += 1;
            throw new BadInput('no');
          },
          { idempotent: true },
        ),
      ).rejects.toThrow(BadInput);
      await expect(
        p.execute(
          async () => {
            calls += 1;
            throw new Outage('slow');
          },
          { idempotent: true },
        ),
      ).rejects.toThrow('slow');
      expect(calls).toBe(2);
    });
  });

  describe('timeout', () => {
    it('abandons a call after timeoutMs, aborts its signal and counts it as a failure', async () => {
      const p = policy({ timeoutMs: 20, breakerThreshold: 1 });
      let aborted = false;
      const err = await p
        .execute(
          (signal) =>
            new Promise((resolve) => {
              signal.addEventListener('abort', () => (aborted = true));
              setTimeout(resolve, 1_000).unref();
            }),
        )
        .catch((e: unknown) => e);
      expect(isPolicyTimeout(err)).toBe(true);
      expect(aborted).toBe(true);
      expect(p.state).toBe('open');
    });
  });
});

describe(waitForDependency.name, () => {
  it('retries with jittered pauses until the dependency answers', async () => {
    const delays: number[] = [];
    let calls = 0;
    const value = await waitForDependency(
      async () => {
        calls += 1;
        if (calls < 5) throw new Error('ECONNREFUSED');
        return 'up';
      },
      {
        timeoutMs: 60_000,
        initialDelayMs: 100,
        maxDelayMs: 10_000,
        sleep: async () => undefined,
        onRetry: ({ delayMs }) => delays.push(delayMs),
      },
    );
    expect(value).toBe('up');
    expect(delays).toHaveLength(4);
    expect(delays.every((d) => d >= 1 && d <= 10_000)).toBe(true);
    // Jittered: replicas restarting together do not retry in lockstep.
    expect(new Set(delays).size).toBeGreaterThan(1);
  });

  it('rethrows the last error once the time is up', async () => {
    let calls = 0;
    await expect(
      waitForDependency(
        async () => {
          calls += 1;
          throw new Error(`attempt ${calls}`);
        },
        { timeoutMs: 50, initialDelayMs: 5, maxDelayMs: 10 },
      ),
    ).rejects.toThrow(/^attempt \d+$/);
    expect(calls).toBeGreaterThan(1);
  });

  it('gives up at once on a fatal error', async () => {
    let calls = 0;
    await expect(
      waitForDependency(
        async () => {
          calls += 1;
          throw new BadInput('password authentication failed');
        },
        { timeoutMs: 60_000, isFatal: (e) => e instanceof BadInput, sleep: async () => undefined },
      ),
    ).rejects.toThrow('password');
    expect(calls).toBe(1);
  });
});
