import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyOnnxModel } from '../../test/helpers/tiny-onnx-model.ts';
import { AppError } from '../errors.ts';
import { OnnxEmbedder } from './onnx.embedder.ts';
import { dot, norm } from '../../test/helpers/vectors.ts';

const DIM = 96;

async function expectConfigError(promise: Promise<unknown>, ...fragments: string[]) {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  const appError = error as AppError;
  expect(appError.code).toBe('CONFIG_INVALID');
  for (const fragment of fragments) expect(appError.message).toContain(fragment);
}

describe(OnnxEmbedder.name, () => {
  let tmp: string;
  let modelDir: string;
  let embedder: OnnxEmbedder;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'engram-onnx-'));
    ({ modelDir } = await writeTinyOnnxModel(path.join(tmp, 'tiny-bert'), { dim: DIM }));
    embedder = await OnnxEmbedder.create({ model: 'tiny-bert', modelDir, allowRemote: false });
  });

  afterAll(async () => {
    await embedder?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('discovers the dimension of the model and reports provider and model name', () => {
    expect(embedder.dimension).toBe(DIM);
    expect(embedder.provider).toBe('onnx');
    expect(embedder.model).toBe('tiny-bert');
  });

  it('returns one unit-length vector of the model dimension per input', async () => {
    const texts = ['the cat sat on the mat', 'Coffee in the morning!', 'zebra xylophone', ''];
    const vectors = await embedder.embed(texts);
    expect(vectors).toHaveLength(texts.length);
    for (const v of vectors) {
      expect(v).toBeInstanceOf(Float32Array);
      expect(v).toHaveLength(DIM);
      expect(norm(v)).toBeCloseTo(1, 5);
    }
  });

  it('gives identical vectors for identical texts and different vectors for different texts', async () => {
    const [a, b, c] = await embedder.embed(['the dog ran in the park', 'the dog ran in the park', 'pizza with cheese']);
    const [again] = await embedder.embed(['the dog ran in the park']);
    expect(Array.from(b!)).toEqual(Array.from(a!));
    expect(Array.from(again!)).toEqual(Array.from(a!));
    expect(dot(a!, c!)).toBeLessThan(0.9);
  });

  it.each([
    ['the cat sat on the mat', 'a small cat sat on a red mat', 'database query error in server code'],
    ['vector search index', 'search the vector index fast', 'cold rain tomorrow'],
    ['warm sun today', 'the sun is warm today', 'database server error'],
  ])('places %j closer to a text sharing its words than to an unrelated one', async (anchor, related, unrelated) => {
    const [a, r, u] = await embedder.embed([anchor, related, unrelated]);
    expect(dot(a!, r!)).toBeGreaterThan(dot(a!, u!) + 0.2);
  });

  it('preserves batch order', async () => {
    const texts = ['warm sun today', 'cold rain tomorrow', 'vector search index', 'blue bird sings'];
    const batch = await embedder.embed(texts);
    const reversed = await embedder.embed([...texts].reverse());
    const singles = await Promise.all(texts.map(async (t) => (await embedder.embed([t]))[0]!));

    texts.forEach((_, i) => {
      expect(Array.from(batch[i]!)).toEqual(Array.from(reversed[texts.length - 1 - i]!));
      for (let d = 0; d < DIM; d++) expect(batch[i]![d]).toBeCloseTo(singles[i]![d]!, 5);
    });
  });

  it('returns an empty list for an empty batch', async () => {
    await expect(embedder.embed([])).resolves.toEqual([]);
  });

  it('rejects a model directory that does not exist with CONFIG_INVALID naming it', async () => {
    const missingDir = path.join(tmp, 'no-such-model');
    await expectConfigError(
      OnnxEmbedder.create({ model: 'missing', modelDir: missingDir, allowRemote: false }),
      missingDir,
      'does not exist',
    );
  });

  it('names the missing file when the model directory is incomplete', async () => {
    await expectConfigError(
      OnnxEmbedder.create({ model: 'tiny-bert', modelDir, allowRemote: false, quantized: true }),
      modelDir,
      'onnx/model_quantized.onnx',
      'quantized: false',
    );
  });

  it('rejects a Hub model that is not cached when remote downloads are off', async () => {
    await expectConfigError(
      OnnxEmbedder.create({
        model: 'engram-test/not-a-real-model',
        allowRemote: false,
        cacheDir: path.join(tmp, 'cache'),
      }),
      'engram-test/not-a-real-model',
      'not available locally',
    );
  });

  it('closes idempotently and refuses to embed afterwards', async () => {
    const other = await OnnxEmbedder.create({ model: 'tiny-bert', modelDir, allowRemote: false });
    await other.close();
    await other.close();
    await expect(other.embed(['the cat'])).rejects.toMatchObject({ code: 'EMBEDDER_UNAVAILABLE' });
  });
});
