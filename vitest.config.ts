import { configDefaults, defineConfig } from 'vitest/config';

// `unit`: unit tests beside the code plus the integration suites on the
// embedded store (PGlite, in-process cache): no external service needed.
// `integration`: the same integration suites against PostgreSQL + pgvector and
// Valkey, from DATABASE_URL / VALKEY_URL (see docs/ci.md).
const shared = {
  pool: 'forks' as const,
  testTimeout: 60_000,
  hookTimeout: 120_000,
};

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          ...shared,
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          // Starts and kills its own PostgreSQL, Valkey and embedder processes: integration only.
          exclude: [...configDefaults.exclude, 'test/integration/chaos.test.ts'],
          env: { ENGRAM_TEST_BACKEND: 'pglite' },
        },
      },
      {
        test: {
          ...shared,
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'src/**/*.contract.test.ts'],
          env: { ENGRAM_TEST_BACKEND: 'postgres' },
        },
      },
    ],
  },
});
