/**
 * The fake OpenAI-compatible embeddings service (fake-openai.ts) as a process
 * of its own, so a chaos test can SIGKILL it and start it again on the same
 * port:
 *
 *   node --import tsx test/helpers/fake-openai-server.ts <port> [dimension]
 *
 * Prints "ready <baseUrl>" once it listens.
 */
import { startFakeOpenAi } from './fake-openai.ts';

const port = Number(process.argv[2] ?? '0');
const dimension = Number(process.argv[3] ?? '64');
if (!Number.isInteger(port) || !Number.isInteger(dimension) || dimension < 1) {
  throw new Error(`usage: fake-openai-server.ts <port> [dimension] (got ${process.argv.slice(2).join(' ')})`);
}
const fake = await startFakeOpenAi(dimension, port);
process.stdout.write(`ready ${fake.baseUrl}\n`);
