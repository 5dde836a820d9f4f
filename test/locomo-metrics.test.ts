import { describe, expect, it } from 'vitest';
import {
  evidenceIds,
  firstEvidenceRank,
  parseConversation,
  parseSessionDateTime,
  retrievalQuestions,
  scoreByCategory,
  scoreRanks,
  turnMemories,
  unknownEvidence,
} from '../bench/lib/locomo.ts';

describe(parseSessionDateTime.name, () => {
  it('returns the afternoon time as UTC', () => {
    expect(parseSessionDateTime('1:56 pm on 8 May, 2023').toISOString()).toBe('2023-05-08T13:56:00.000Z');
  });

  it('returns the morning time unchanged', () => {
    expect(parseSessionDateTime('10:37 am on 27 June, 2023').toISOString()).toBe('2023-06-27T10:37:00.000Z');
  });

  it('returns 12 am as midnight and 12 pm as noon', () => {
    expect(parseSessionDateTime('12:09 am on 13 September, 2023').toISOString()).toBe('2023-09-13T00:09:00.000Z');
    expect(parseSessionDateTime('12:30 pm on 1 January, 2024').toISOString()).toBe('2024-01-01T12:30:00.000Z');
  });

  it('reads month names in any case and without the comma', () => {
    expect(parseSessionDateTime('7:05 PM on 29 february 2024').toISOString()).toBe('2024-02-29T19:05:00.000Z');
  });

  it.each(['13:00 pm on 8 May, 2023', '1:60 pm on 8 May, 2023', '1:56 pm on 8 Mai, 2023', '2023-05-08T13:56:00Z', ''])(
    'rejects %j',
    (text) => {
      expect(() => parseSessionDateTime(text)).toThrow(/not a LoCoMo date-time/);
    },
  );

  it('rejects a day the month does not have', () => {
    expect(() => parseSessionDateTime('1:00 pm on 31 April, 2023')).toThrow(/no such day/);
    expect(() => parseSessionDateTime('1:00 pm on 29 February, 2023')).toThrow(/no such day/);
  });
});

describe(evidenceIds.name, () => {
  it('splits entries that hold several ids and drops duplicates and blanks', () => {
    expect(evidenceIds(['D8:6; D9:17', 'D1:3', 'D1:3', ' ', 'D2:1,D2:2'])).toEqual([
      'D8:6',
      'D9:17',
      'D1:3',
      'D2:1',
      'D2:2',
    ]);
  });
});

describe(firstEvidenceRank.name, () => {
  it('returns the 1-based rank of the first evidence result', () => {
    expect(firstEvidenceRank(['D1:1', 'D1:2', 'D3:4', 'D1:5'], ['D1:5', 'D3:4'])).toBe(3);
  });

  it('returns undefined when no evidence is in the top k', () => {
    const ids = Array.from({ length: 12 }, (_, i) => `D1:${i + 1}`);
    expect(firstEvidenceRank(ids, ['D1:11'])).toBeUndefined();
    expect(firstEvidenceRank(ids, ['D1:11'], 11)).toBe(11);
    expect(firstEvidenceRank(ids, ['D1:10'])).toBe(10);
  });

  it('never counts a result without a dia_id', () => {
    expect(firstEvidenceRank([undefined, 'D1:2'], ['D1:2'])).toBe(2);
    expect(firstEvidenceRank([], ['D1:2'])).toBeUndefined();
  });
});

describe(scoreRanks.name, () => {
  it('returns hit@k as the share of ranks within k and MRR@10 as the mean reciprocal rank', () => {
    const s = scoreRanks([1, 3, undefined, 7, 2]);
    expect(s.n).toBe(5);
    expect(s.hitAt1).toBeCloseTo(1 / 5);
    expect(s.hitAt5).toBeCloseTo(3 / 5);
    expect(s.hitAt10).toBeCloseTo(4 / 5);
    expect(s.mrrAt10).toBeCloseTo((1 + 1 / 3 + 1 / 7 + 1 / 2) / 5);
  });

  it('gives no reciprocal rank to a rank beyond 10', () => {
    const s = scoreRanks([11, 1]);
    expect(s.hitAt10).toBeCloseTo(1 / 2);
    expect(s.mrrAt10).toBeCloseTo(1 / 2);
  });

  it('returns NaN, not 0 or 1, for no questions', () => {
    const s = scoreRanks([]);
    expect(s.n).toBe(0);
    expect(s.hitAt10).toBeNaN();
    expect(s.mrrAt10).toBeNaN();
  });
});

describe(scoreByCategory.name, () => {
  it('scores each category apart and all together', () => {
    const { overall, byCategory } = scoreByCategory([
      { category: 1, rank: 1 },
      { category: 1, rank: undefined },
      { category: 2, rank: 4 },
      { category: 4, rank: 9 },
    ]);
    expect(overall).toMatchObject({ n: 4, hitAt1: 1 / 4, hitAt5: 2 / 4, hitAt10: 3 / 4 });
    expect(byCategory[1]).toMatchObject({ n: 2, hitAt1: 1 / 2, hitAt10: 1 / 2, mrrAt10: 1 / 2 });
    expect(byCategory[2]).toMatchObject({ n: 1, hitAt1: 0, hitAt5: 1, mrrAt10: 1 / 4 });
    expect(byCategory[3].n).toBe(0);
    expect(byCategory[4].hitAt5).toBe(0);
    expect(byCategory[4].hitAt10).toBe(1);
  });
});

describe(parseConversation.name, () => {
  const raw = {
    speaker_a: 'Caroline',
    speaker_b: 'Melanie',
    session_10_date_time: '9:00 am on 2 June, 2023',
    session_10: [{ speaker: 'Melanie', dia_id: 'D10:1', text: 'Back again.' }],
    session_2_date_time: '1:56 pm on 8 May, 2023',
    session_2: [
      { speaker: 'Caroline', dia_id: 'D2:1', text: 'Hey Mel!' },
      { speaker: 'Melanie', dia_id: 'D2:2', text: 'Look at this.', blip_caption: 'a photo of a dog' },
    ],
    session_2_summary: 'not a session',
    qa: [
      { question: 'Who said hey?', answer: 'Caroline', evidence: ['D2:1'], category: 4 },
      { question: 'Unanswerable?', adversarial_answer: 'x', evidence: ['D2:2'], category: 5 },
      { question: 'No evidence?', answer: 'y', evidence: [], category: 1 },
      { question: 'When?', answer: 2023, evidence: ['D2:1; D10:1', 'D:9:9'], category: 2 },
    ],
  };

  it('returns the sessions in numeric order with their dates', () => {
    const c = parseConversation('26', raw);
    expect(c.sessions.map((s) => s.n)).toEqual([2, 10]);
    expect(c.sessions[0]?.dateTime.toISOString()).toBe('2023-05-08T13:56:00.000Z');
  });

  it('returns every turn as a memory "<speaker>: <text>" in its conversation scope', () => {
    const memories = turnMemories(parseConversation('26', raw));
    expect(memories).toEqual([
      {
        content: 'Caroline: Hey Mel!',
        scope: { user: 'locomo-26' },
        metadata: { dia_id: 'D2:1', session: 2 },
        validFrom: '2023-05-08T13:56:00.000Z',
      },
      {
        content: 'Melanie: Look at this.',
        scope: { user: 'locomo-26' },
        metadata: { dia_id: 'D2:2', session: 2 },
        validFrom: '2023-05-08T13:56:00.000Z',
      },
      {
        content: 'Melanie: Back again.',
        scope: { user: 'locomo-26' },
        metadata: { dia_id: 'D10:1', session: 10 },
        validFrom: '2023-06-02T09:00:00.000Z',
      },
    ]);
  });

  it('returns only questions of categories 1–4 with evidence, evidence split', () => {
    const qs = retrievalQuestions(parseConversation('26', raw));
    expect(qs.map((q) => [q.index, q.category, q.evidence])).toEqual([
      [0, 4, ['D2:1']],
      [3, 2, ['D2:1', 'D10:1', 'D:9:9']],
    ]);
    expect(qs[1]?.answer).toBe('2023');
  });

  it('reports evidence that names no turn', () => {
    expect(unknownEvidence(parseConversation('26', raw))).toEqual(['D:9:9']);
  });

  it('rejects a session without its date-time', () => {
    const { session_10_date_time: _gone, ...broken } = raw;
    expect(() => parseConversation('26', broken)).toThrow(/session_10_date_time/);
  });
});
