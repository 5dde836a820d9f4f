// @ts-check
import js from '@eslint/js';
import unicorn from 'eslint-plugin-unicorn';
import tseslint from 'typescript-eslint';

/**
 * Import direction (STYLE.md) is enforced with `no-restricted-imports` per
 * layer, so a wrong import fails `npm run lint`.
 */
const drivers = ['fastify', 'fastify-*', '@fastify/*', 'kysely', 'pg', '@electric-sql/*', 'ioredis', 'commander'];
const layer = (files, forbidden, packages = []) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          ...forbidden.map((dir) => ({
            group: [`**/${dir}/**`, `**/${dir}`],
            message: `This layer must not import ${dir}/ (see STYLE.md).`,
          })),
          ...(packages.length > 0
            ? [{ group: packages, message: 'The domain stays free of frameworks and drivers.' }]
            : []),
        ],
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['node_modules/**', '.engram/**', 'bench/results/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { unicorn },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'unicorn/filename-case': ['error', { case: 'kebabCase' }],
    },
  },
  { files: ['src/**/*.ts'], rules: { 'no-console': 'error' } },
  {
    // Tests read untyped JSON bodies (inject().json()); asserting on them is the point.
    files: ['test/**/*.ts', '**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
  { files: ['**/*.js'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
  layer(['src/domain/**/*.ts'], ['storage', 'http', 'mcp', 'config', 'embed', 'cli', 'auth'], [...drivers, 'zod']),
  layer(['src/storage/**/*.ts'], ['http', 'mcp', 'auth', 'cli']),
  layer(['src/http/**/*.ts'], ['mcp', 'storage', 'cli']),
  layer(['src/mcp/**/*.ts'], ['http', 'storage', 'cli']),
  // auth/ verifies credentials and holds the policy; its tests may use real stores.
  { ...layer(['src/auth/**/*.ts'], ['storage', 'http', 'mcp', 'cli', 'embed'], drivers), ignores: ['**/*.test.ts'] },
  layer(['src/code/**/*.ts'], ['storage', 'http', 'mcp', 'cli', 'auth']),
  // The outbound policy is a leaf: any adapter may ask it, it asks no one.
  layer(['src/net/**/*.ts'], ['domain', 'storage', 'http', 'mcp', 'cli', 'auth', 'code', 'embed']),
  layer(['src/ports/**/*.ts'], ['storage', 'http', 'mcp', 'embed', 'cli'], drivers),
);
