import { describe, expect, it } from 'vitest';
import { ImportWindow } from './import-window.ts';

describe(ImportWindow.name, () => {
  const at = (enabled = true) => {
    let now = 0;
    const w = new ImportWindow({ enabled, quietMs: 1_000, maxYieldMs: 60_000, now: () => now });
    return { w, set: (t: number) => (now = t) };
  };

  it('is active while a bulk write runs and for a quiet period after the last one', () => {
    const { w, set } = at();
    expect(w.active()).toBe(false);
    w.started();
    set(5_000); // a slow batch
    expect(w.active()).toBe(true);
    w.ended();
    set(5_999);
    expect(w.active()).toBe(true);
    set(6_000);
    expect(w.active()).toBe(false);
  });

  it('stops yielding after the longest streak, until the import pauses', () => {
    const { w, set } = at();
    for (let t = 0; t <= 60_000; t += 500) {
      set(t);
      w.started();
      w.ended();
    }
    expect(w.active()).toBe(false);
    set(62_000);
    w.started();
    expect(w.active()).toBe(true);
  });

  it('never yields when disabled (PostgreSQL)', () => {
    const { w } = at(false);
    w.started();
    expect(w.active()).toBe(false);
  });
});
