import type { CodeAnalysis } from '../ports/code-analysis.ts';
import { createJsResolver } from './js-resolver.ts';
import { openTsPrecise } from './ts-precise.ts';

/** oxc-resolver for module resolution, the TypeScript compiler for the precise pass (reading files of at most `maxFileBytes`). */
export const createCodeAnalysis = (opts: { readonly maxFileBytes: number }): CodeAnalysis => ({
  moduleResolver: createJsResolver,
  openPrecise: (root, files) => openTsPrecise(root, files, opts),
});
