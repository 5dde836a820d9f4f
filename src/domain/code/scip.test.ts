import { describe, expect, it } from 'vitest';
import type { SymbolKind } from '../../ports/code-parser.ts';
import { fileDescriptors, scipSymbol, scipSymbolName, symbolDescriptor } from './scip.ts';

const pkg = { manager: 'npm', name: '@scope/lib', version: '1.2.0' };
const id = (path: string, ...descriptors: string[]) =>
  scipSymbol('typescript', pkg, fileDescriptors(path) + descriptors.join(''));

describe('scipSymbolName', () => {
  const kinds: SymbolKind[] = [
    'class',
    'interface',
    'type',
    'enum',
    'function',
    'method',
    'module',
    'macro',
    'variable',
  ];
  it.each(kinds)('reads back the name of a %s, plain or escaped', (kind) => {
    for (const name of ['parse', 'A.B', 'weird name', 'tick`s', '``', '$x-1']) {
      const parent = symbolDescriptor('class', 'Owner`s');
      expect(scipSymbolName(id('src/my file.ts', parent, symbolDescriptor(kind, name)))).toBe(name);
      expect(scipSymbolName(id('src/util.ts', symbolDescriptor(kind, name, 2)))).toBe(name);
    }
  });

  it('answers undefined for what does not end in a descriptor', () => {
    for (const bad of ['', 'scip-typescript npm x 1.0 ', 'no suffix', 'a(b).', 'x/`open`', '#', '``#'])
      expect(scipSymbolName(bad), bad).toBeUndefined();
  });
});
