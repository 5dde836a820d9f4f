import type { CodeAnalysis } from '../ports/code-analysis.ts';
import { createJsResolver } from './js-resolver.ts';
import { openTsPrecise } from './ts-precise.ts';

/** oxc-resolver for module resolution, the TypeScript compiler for the precise pass. */
export const createCodeAnalysis = (): CodeAnalysis => ({
  moduleResolver: createJsResolver,
  openPrecise: openTsPrecise,
});
