import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The LoCoMo conversations (Maharana et al., ACL 2024) and the retrieval
 * metric memory search is judged by (see the dataset's README): every turn
 * one memory `"<speaker>: <text>"` scoped to its conversation; for each
 * question of categories 1–4 with evidence, a search of that scope with limit
 * 10; hit@k = the share of questions with an evidence turn in the top k,
 * MRR@10 = the mean reciprocal rank of the first one (0 beyond rank 10).
 * Everything here but {@link loadLocomo} is pure, so other benchmarks can
 * score their own rankings with it.
 */

export interface LocomoTurn {
  readonly speaker: string;
  readonly diaId: string;
  readonly text: string;
  /** Caption of an image the speaker shared; not part of the memory's content (the README's metric leaves it out). */
  readonly blipCaption: string | undefined;
}

export interface LocomoSession {
  /** N of `session_N`. */
  readonly n: number;
  /** `session_N_date_time` as written, e.g. "1:56 pm on 8 May, 2023". */
  readonly dateTimeText: string;
  readonly dateTime: Date;
  readonly turns: readonly LocomoTurn[];
}

export interface LocomoQuestion {
  readonly question: string;
  readonly answer: string | undefined;
  /** The evidence turns' dia_ids, entries like "D8:6; D9:17" split (see {@link evidenceIds}). */
  readonly evidence: readonly string[];
  readonly category: number;
}

export interface LocomoConversation {
  /** The file name without `.json`, e.g. "26". */
  readonly id: string;
  readonly speakerA: string;
  readonly speakerB: string;
  /** In session order. */
  readonly sessions: readonly LocomoSession[];
  readonly questions: readonly LocomoQuestion[];
}

/** The categories the retrieval metric covers; 5 (adversarial, unanswerable) is left out. */
export const RETRIEVAL_CATEGORIES = {
  1: 'multi-hop',
  2: 'temporal',
  3: 'open-domain',
  4: 'single-hop',
} as const;
export type RetrievalCategory = keyof typeof RETRIEVAL_CATEGORIES;
export const CATEGORY_IDS = [1, 2, 3, 4] as const satisfies readonly RetrievalCategory[];

const isRetrievalCategory = (c: number): c is RetrievalCategory => (CATEGORY_IDS as readonly number[]).includes(c);

const MONTHS = [
  'january',
  'february',
  'march',
  'april',
  'may',
  'june',
  'july',
  'august',
  'september',
  'october',
  'november',
  'december',
];

/**
 * "1:56 pm on 8 May, 2023" → 2023-05-08T13:56:00Z. LoCoMo gives no time
 * zone, so the wall-clock time is read as UTC. Throws on anything else
 * (including impossible dates such as 31 February).
 */
export function parseSessionDateTime(text: string): Date {
  const m = /^\s*(\d{1,2}):(\d{2})\s*(am|pm)\s+on\s+(\d{1,2})\s+([a-z]+),?\s+(\d{4})\s*$/i.exec(text);
  if (m === null) throw new Error(`not a LoCoMo date-time: ${JSON.stringify(text)}`);
  const [, h, min, ampm, d, monthName, y] = m as unknown as [string, string, string, string, string, string, string];
  const hour12 = Number(h);
  const minute = Number(min);
  const day = Number(d);
  const year = Number(y);
  const month = MONTHS.indexOf(monthName.toLowerCase());
  if (hour12 < 1 || hour12 > 12 || minute > 59 || month < 0) {
    throw new Error(`not a LoCoMo date-time: ${JSON.stringify(text)}`);
  }
  // 12 am is midnight, 12 pm noon.
  const hour = (hour12 % 12) + (ampm.toLowerCase() === 'pm' ? 12 : 0);
  const date = new Date(Date.UTC(year, month, day, hour, minute));
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month) {
    throw new Error(`no such day: ${JSON.stringify(text)}`);
  }
  return date;
}

/**
 * A question's evidence as dia_ids. A few entries hold two ids in one string
 * ("D8:6; D9:17"); they are split on `;`, `,` and white space. Nothing else is
 * rewritten: an id that names no turn (e.g. "D:11:26") stays and can never hit.
 */
export function evidenceIds(raw: readonly string[]): string[] {
  return [
    ...new Set(
      raw
        .flatMap((e) => e.split(/[;,\s]+/))
        .map((e) => e.trim())
        .filter((e) => e.length > 0),
    ),
  ];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function text(obj: Record<string, unknown>, key: string, where: string): string {
  const v = obj[key];
  if (typeof v !== 'string') throw new Error(`${where}: ${key} is not a string`);
  return v;
}

/** One conversation file's JSON, checked and in session order. Throws naming what is malformed. */
export function parseConversation(id: string, raw: unknown): LocomoConversation {
  if (!isRecord(raw)) throw new Error(`conversation ${id}: not a JSON object`);
  const sessions: LocomoSession[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const m = /^session_(\d+)$/.exec(key);
    if (m === null) continue;
    const n = Number(m[1]);
    const where = `conversation ${id} ${key}`;
    if (!Array.isArray(value)) throw new Error(`${where}: not an array of turns`);
    const dateTimeText = text(raw, `${key}_date_time`, `conversation ${id}`);
    const turns = value.map((t, i): LocomoTurn => {
      if (!isRecord(t)) throw new Error(`${where} turn ${i}: not an object`);
      const caption = t.blip_caption;
      return {
        speaker: text(t, 'speaker', `${where} turn ${i}`),
        diaId: text(t, 'dia_id', `${where} turn ${i}`),
        text: text(t, 'text', `${where} turn ${i}`),
        blipCaption: typeof caption === 'string' && caption.length > 0 ? caption : undefined,
      };
    });
    sessions.push({ n, dateTimeText, dateTime: parseSessionDateTime(dateTimeText), turns });
  }
  sessions.sort((a, b) => a.n - b.n);
  const qa = raw.qa;
  if (!Array.isArray(qa)) throw new Error(`conversation ${id}: qa is not an array`);
  const questions = qa.map((q, i): LocomoQuestion => {
    const where = `conversation ${id} qa ${i}`;
    if (!isRecord(q)) throw new Error(`${where}: not an object`);
    const evidence = q.evidence ?? [];
    if (!Array.isArray(evidence) || !evidence.every((e) => typeof e === 'string')) {
      throw new Error(`${where}: evidence is not an array of strings`);
    }
    if (typeof q.category !== 'number') throw new Error(`${where}: category is not a number`);
    const answer = q.answer;
    return {
      question: text(q, 'question', where),
      answer: typeof answer === 'string' || typeof answer === 'number' ? String(answer) : undefined,
      evidence: evidenceIds(evidence),
      category: q.category,
    };
  });
  return {
    id,
    speakerA: text(raw, 'speaker_a', `conversation ${id}`),
    speakerB: text(raw, 'speaker_b', `conversation ${id}`),
    sessions,
    questions,
  };
}

/**
 * The conversations in `dir` (`<id>.json`, in id order, numeric where the ids
 * are numbers); only `ids` when given, and then every one must exist.
 */
export function loadLocomo(dir: string, ids?: readonly string[]): LocomoConversation[] {
  const available = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const chosen = ids === undefined ? available : [...ids];
  const missing = chosen.filter((id) => !available.includes(id));
  if (missing.length > 0) {
    throw new Error(`no conversation ${missing.join(', ')} in ${dir} (there are ${available.join(', ')})`);
  }
  return chosen.map((id) => parseConversation(id, JSON.parse(readFileSync(path.join(dir, `${id}.json`), 'utf8'))));
}

/** The scope user a conversation's memories are stored and searched under. */
export const scopeUser = (conversationId: string): string => `locomo-${conversationId}`;

/** A turn's memory content, as the README defines it. */
export const turnContent = (turn: LocomoTurn): string => `${turn.speaker}: ${turn.text}`;

/** The `POST /v1/memories` body of a turn. */
export interface TurnMemory {
  readonly content: string;
  readonly scope: { readonly user: string };
  readonly metadata: { readonly dia_id: string; readonly session: number };
  readonly validFrom: string;
}

/** Every turn of a conversation as a memory body, in session and turn order. */
export function turnMemories(c: LocomoConversation): TurnMemory[] {
  return c.sessions.flatMap((s) =>
    s.turns.map((t) => ({
      content: turnContent(t),
      scope: { user: scopeUser(c.id) },
      metadata: { dia_id: t.diaId, session: s.n },
      validFrom: s.dateTime.toISOString(),
    })),
  );
}

/** A question the metric scores: its category is 1–4 and it has evidence. */
export interface RetrievalQuestion extends LocomoQuestion {
  readonly conversationId: string;
  /** Position in the conversation's `qa` array, to find it again. */
  readonly index: number;
  readonly category: RetrievalCategory;
}

export function retrievalQuestions(c: LocomoConversation): RetrievalQuestion[] {
  return c.questions.flatMap((q, index) =>
    isRetrievalCategory(q.category) && q.evidence.length > 0
      ? [{ ...q, category: q.category, conversationId: c.id, index }]
      : [],
  );
}

/** Evidence dia_ids that name no turn of the conversation (they can never be found). */
export function unknownEvidence(c: LocomoConversation): string[] {
  const ids = new Set(c.sessions.flatMap((s) => s.turns.map((t) => t.diaId)));
  return [...new Set(c.questions.flatMap((q) => q.evidence.filter((e) => !ids.has(e))))];
}

/** The deepest rank the metric looks at. */
export const MAX_K = 10;

/**
 * 1-based rank of the first result whose dia_id is evidence, within the top
 * `k`; undefined when none is. Results without a dia_id never count.
 */
export function firstEvidenceRank(
  resultDiaIds: readonly (string | undefined)[],
  evidence: readonly string[],
  k = MAX_K,
): number | undefined {
  const wanted = new Set(evidence);
  const i = resultDiaIds.slice(0, k).findIndex((id) => id !== undefined && wanted.has(id));
  return i < 0 ? undefined : i + 1;
}

export interface RetrievalScores {
  /** Questions scored. */
  readonly n: number;
  readonly hitAt1: number;
  readonly hitAt5: number;
  readonly hitAt10: number;
  readonly mrrAt10: number;
}

/** hit@1/5/10 and MRR@10 of first-evidence ranks (undefined: not found); NaN for no questions. */
export function scoreRanks(ranks: readonly (number | undefined)[]): RetrievalScores {
  const n = ranks.length;
  const share = (pred: (r: number) => boolean) =>
    n === 0 ? Number.NaN : ranks.filter((r) => r !== undefined && pred(r)).length / n;
  const rr = ranks.reduce<number>((sum, r) => sum + (r !== undefined && r >= 1 && r <= MAX_K ? 1 / r : 0), 0);
  return {
    n,
    hitAt1: share((r) => r <= 1),
    hitAt5: share((r) => r <= 5),
    hitAt10: share((r) => r <= 10),
    mrrAt10: n === 0 ? Number.NaN : rr / n,
  };
}

/** The scores of every question together and of each category apart. */
export function scoreByCategory(
  items: readonly { readonly category: RetrievalCategory; readonly rank: number | undefined }[],
): {
  readonly overall: RetrievalScores;
  readonly byCategory: Record<RetrievalCategory, RetrievalScores>;
} {
  const of = (c: RetrievalCategory) => scoreRanks(items.filter((x) => x.category === c).map((x) => x.rank));
  return {
    overall: scoreRanks(items.map((x) => x.rank)),
    byCategory: { 1: of(1), 2: of(2), 3: of(3), 4: of(4) },
  };
}
