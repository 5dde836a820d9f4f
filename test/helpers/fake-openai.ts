import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BuiltinEmbedder } from '../../src/embed/builtin.embedder.ts';

/**
 * A stand-in for a third-party OpenAI-compatible embeddings service, speaking
 * the real wire protocol (`POST /v1/embeddings`) over real HTTP. Vectors come
 * from the builtin embedder so results are meaningful. `down()` makes it
 * answer 503 (a failing provider); `dimension` can be changed to simulate a
 * model swap behind the same name.
 */
export interface FakeOpenAi {
  readonly baseUrl: string;
  /** The dimension it was started with. */
  readonly dimension: number;
  readonly calls: number;
  /** Every input it was asked to embed, in order (answered or not). */
  readonly inputs: readonly string[];
  down(on: boolean): void;
  setDimension(d: number): void;
  close(): Promise<void>;
}

/** `port` 0 (default) picks a free one; a fixed port lets a killed fake come back at the same URL. */
export async function startFakeOpenAi(dimension = 64, port = 0): Promise<FakeOpenAi> {
  let isDown = false;
  let dim = dimension;
  let calls = 0;
  const inputs: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      calls += 1;
      try {
        const asked = (JSON.parse(body) as { input?: unknown }).input;
        if (Array.isArray(asked)) inputs.push(...asked.map(String));
      } catch {
        // Not JSON: answered below like any other request.
      }
      if (isDown) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'overloaded', type: 'server_error' } }));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/v1/embeddings') {
        res.writeHead(404).end();
        return;
      }
      const parsed = JSON.parse(body) as { model: string; input: string[] };
      const embedder = new BuiltinEmbedder('fake', dim);
      void embedder.embed(parsed.input).then((vectors) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            object: 'list',
            model: parsed.model,
            data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: Array.from(v) })),
            usage: { prompt_tokens: 0, total_tokens: 0 },
          }),
        );
      });
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const bound = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://127.0.0.1:${bound}/v1`,
    dimension,
    get calls() {
      return calls;
    },
    inputs,
    down: (on) => {
      isDown = on;
    },
    setDimension: (d) => {
      dim = d;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * Engram's environment for embedding through `fake` with no retries (tests
 * count calls and open circuits deterministically); `extra` adds breaker,
 * job or other settings.
 */
export function fakeOpenAiEnv(fake: FakeOpenAi, extra: Record<string, string> = {}): Record<string, string> {
  return {
    EMBEDDER: 'openai',
    OPENAI_BASE_URL: fake.baseUrl,
    EMBEDDING_MODEL: 'fake-embed',
    EMBEDDING_DIMENSION: String(fake.dimension),
    EMBEDDING_RETRIES: '0',
    ...extra,
  };
}
