import { expect } from 'vitest';

/** Dot product of two equal-length vectors (asserts the lengths match). */
export const dot = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] ?? 0) * (b[i] ?? 0);
  return sum;
};

export const norm = (v: Float32Array): number => Math.sqrt(dot(v, v));
