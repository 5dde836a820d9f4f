import { rng } from './corpus.ts';

/**
 * A deterministic knowledge graph for the MCP memory-server tools: entity i
 * has a unique name, one of a few types and two observations, the second of
 * which names a code word shared by three entities, so a search for a code
 * word matches a few entities however large the graph. Code words are `q` and
 * three consonant-vowel syllables (`qbaceti`): no English word in the other
 * texts contains one, so substring and full-text matching agree on them.
 */

export interface GraphEntity {
  readonly name: string;
  readonly entityType: string;
  readonly observations: readonly string[];
}

const TYPES = ['person', 'project', 'service', 'team', 'tool'] as const;
const TOPICS = ['planning', 'design', 'release', 'budget', 'hiring', 'security', 'support', 'roadmap'] as const;
const CONSONANTS = 'bcdfghjklmnprstvwxyz';
const VOWELS = 'aeiou';

const syllable = (k: number): string => `${CONSONANTS[Math.floor(k / 5) % 20]}${VOWELS[k % 5]}`;

/** The code word of group `j` (one word per group up to 1,000,000 groups). */
export const codeWord = (j: number): string =>
  `q${syllable(j % 100)}${syllable(Math.floor(j / 100) % 100)}${syllable(Math.floor(j / 10_000) % 100)}`;

/** Groups of three entities sharing a code word, in a graph of `n`. */
const groups = (n: number): number => Math.max(1, Math.ceil(n / 3));

export const entityName = (i: number): string => `entity-${i}`;

export function graphEntityAt(i: number, n: number): GraphEntity {
  return {
    name: entityName(i),
    entityType: TYPES[i % TYPES.length] ?? 'person',
    observations: [
      `Mentioned in the ${TOPICS[i % TOPICS.length] ?? 'planning'} notes`,
      `Works with ${codeWord(i % groups(n))} on item ${i}`,
    ],
  };
}

/** The calls of iteration `k`, the same for every server measured. */
export interface GraphCalls {
  /** A search_nodes query matching three entities. */
  readonly query: string;
  /** Three entity names for open_nodes. */
  readonly names: readonly string[];
  /** The entity add_observations adds one observation to. */
  readonly observe: string;
}

export function graphCallsAt(seed: number, k: number, n: number): GraphCalls {
  const r = rng((seed * 1_000_003 + k) >>> 0);
  const any = () => Math.floor(r() * n);
  return {
    query: codeWord(Math.floor(r() * groups(n))),
    names: [entityName(any()), entityName(any()), entityName(any())],
    observe: entityName(any()),
  };
}
