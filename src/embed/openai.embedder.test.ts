import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import { OpenAiEmbedder } from './openai.embedder.ts';

const API_KEY = 'sk-test-key';
const DIM = 4;

interface RecordedRequest {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly body: unknown;
}

interface EmbeddingsRequest {
  readonly model: string;
  readonly input: string[];
}

type Answer = (req: EmbeddingsRequest) => { status: number; body: unknown };

/** The vector the fake model gives input `i`: not normalised, distinct per position. */
const rawVector = (i: number, dim = DIM): number[] =>
  Array.from({ length: dim }, (_, j) => (j === i % dim ? 3 : 0) + (j === (i + 1) % dim ? 4 : 0));

/** An OpenAI-style list answer; `order` permutes the `data` entries (their `index` stays correct). */
const listAnswer = (req: EmbeddingsRequest, opts: { dim?: number; order?: (n: number) => number[] } = {}) => {
  const data = req.input.map((_, index) => ({ object: 'embedding', index, embedding: rawVector(index, opts.dim) }));
  const order = opts.order?.(data.length) ?? data.map((_, i) => i);
  return {
    object: 'list',
    data: order.map((i) => data[i]),
    model: req.model,
    usage: { prompt_tokens: req.input.length, total_tokens: req.input.length },
  };
};

/**
 * A fake `POST /v1/embeddings` server speaking the OpenAI wire protocol on a
 * real socket. It rejects requests OpenAI would reject (wrong path, missing
 * bearer token, malformed body) with OpenAI-style error JSON.
 */
class FakeEmbeddingsServer {
  readonly requests: RecordedRequest[] = [];
  answer: Answer = (req) => ({ status: 200, body: listAnswer(req) });
  requireAuth = true;
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const send = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        };
        const error = (status: number, message: string) =>
          send(status, { error: { message, type: 'invalid_request_error', param: null, code: null } });
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = undefined;
        }
        this.requests.push({ method: req.method, url: req.url, headers: req.headers, body });
        if (req.method !== 'POST' || req.url !== '/v1/embeddings') return error(404, 'Not found');
        if (this.requireAuth && req.headers.authorization !== `Bearer ${API_KEY}`) {
          return error(401, 'Incorrect API key provided');
        }
        if (!req.headers['content-type']?.startsWith('application/json')) return error(415, 'Expected JSON');
        const parsed = body as Partial<EmbeddingsRequest> | undefined;
        if (
          typeof parsed?.model !== 'string' ||
          !Array.isArray(parsed.input) ||
          !parsed.input.every((s) => typeof s === 'string')
        ) {
          return error(400, "'model' and 'input' (array of strings) are required");
        }
        const answer = this.answer({ model: parsed.model, input: parsed.input });
        send(answer.status, answer.body);
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/v1`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

const norm = (v: Float32Array): number => Math.hypot(...v);

describe(OpenAiEmbedder.name, () => {
  const fake = new FakeEmbeddingsServer();
  let baseUrl: string;
  const embedder = (opts: { apiKey?: string | undefined; dimension?: number; baseUrl?: string } = {}) =>
    new OpenAiEmbedder({
      baseUrl: opts.baseUrl ?? baseUrl,
      apiKey: 'apiKey' in opts ? opts.apiKey : API_KEY,
      model: 'text-embedding-3-small',
      dimension: opts.dimension ?? DIM,
      timeoutMs: 5_000,
    });

  beforeAll(async () => {
    baseUrl = await fake.start();
  });

  afterAll(async () => {
    await fake.stop();
  });

  beforeEach(() => {
    fake.requests.length = 0;
    fake.requireAuth = true;
    fake.answer = (req) => ({ status: 200, body: listAnswer(req) });
  });

  describe('embed', () => {
    it('returns normalised vectors in input order', async () => {
      const texts = ['alpha', 'beta', 'gamma'];
      const vectors = await embedder().embed(texts);
      expect(vectors).toHaveLength(3);
      vectors.forEach((v, i) => {
        expect(v).toBeInstanceOf(Float32Array);
        expect(v).toHaveLength(DIM);
        expect(norm(v)).toBeCloseTo(1, 6);
        expect(Array.from(v)).toEqual(rawVector(i).map((x) => expect.closeTo(x / 5, 6) as unknown));
      });
    });

    it('sends a JSON body with the model and the input array, and a bearer token', async () => {
      await embedder().embed(['one', 'two']);
      expect(fake.requests).toHaveLength(1);
      const [req] = fake.requests;
      expect(req?.method).toBe('POST');
      expect(req?.url).toBe('/v1/embeddings');
      expect(req?.headers.authorization).toBe(`Bearer ${API_KEY}`);
      expect(req?.headers['content-type']).toMatch(/^application\/json/);
      expect(req?.body).toMatchObject({ model: 'text-embedding-3-small', input: ['one', 'two'] });
    });

    it('returns vectors in input order when the answer lists them in another order', async () => {
      fake.answer = (req) => ({ status: 200, body: listAnswer(req, { order: (n) => [...Array(n).keys()].reverse() }) });
      const texts = ['first', 'second', 'third', 'fourth'];
      const vectors = await embedder().embed(texts);
      expect(vectors.map((v) => Array.from(v))).toEqual(
        texts.map((_, i) => rawVector(i).map((x) => expect.closeTo(x / 5, 6) as unknown)),
      );
    });

    it('returns vectors when the base URL has a trailing slash', async () => {
      const vectors = await embedder({ baseUrl: `${baseUrl}/` }).embed(['x']);
      expect(vectors).toHaveLength(1);
      expect(fake.requests[0]?.url).toBe('/v1/embeddings');
    });

    it('sends no Authorization header when no API key is configured', async () => {
      fake.requireAuth = false;
      await embedder({ apiKey: undefined }).embed(['local model']);
      expect(fake.requests).toHaveLength(1);
      expect(fake.requests[0]?.headers.authorization).toBeUndefined();
    });

    it('returns an empty array for no inputs without calling the endpoint', async () => {
      expect(await embedder().embed([])).toEqual([]);
      expect(fake.requests).toHaveLength(0);
    });

    it('throws EMBEDDING_DIMENSION_MISMATCH when the answer has another dimension', async () => {
      fake.answer = (req) => ({ status: 200, body: listAnswer(req, { dim: DIM + 2 }) });
      const error = await rejection(embedder().embed(['a', 'b']));
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe('EMBEDDING_DIMENSION_MISMATCH');
      expect((error as AppError).details).toEqual({ model: 'text-embedding-3-small', expected: DIM, got: DIM + 2 });
    });

    it('throws naming the status when the endpoint answers 500', async () => {
      fake.answer = () => ({
        status: 500,
        body: { error: { message: 'The server had an error', type: 'server_error', param: null, code: null } },
      });
      const error = await rejection(embedder().embed(['a']));
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain('500');
    });

    it('throws when the endpoint rejects the API key', async () => {
      const error = await rejection(embedder({ apiKey: 'sk-wrong' }).embed(['a']));
      expect((error as Error).message).toContain('401');
    });

    it('throws when the answer has fewer vectors than inputs', async () => {
      fake.answer = (req) => {
        const body = listAnswer(req);
        return { status: 200, body: { ...body, data: body.data.slice(1) } };
      };
      const error = await rejection(embedder().embed(['a', 'b', 'c']));
      expect((error as Error).message).toContain('2 vectors for 3 inputs');
    });

    it('throws when the answer has a non-numeric vector', async () => {
      fake.answer = (req) => ({
        status: 200,
        body: { object: 'list', data: [{ object: 'embedding', index: 0, embedding: 'AAAA' }], model: req.model },
      });
      const error = await rejection(embedder().embed(['a']));
      expect((error as Error).message).toContain('non-numeric');
    });
  });
});
