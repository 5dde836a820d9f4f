/**
 * An OpenAI-compatible embeddings server as a process of its own, for
 * bench:load to point EMBEDDER=openai at and SIGKILL half-way through a run.
 * It answers with the builtin embedder's vectors (test/helpers/fake-openai.ts),
 * so a store seeded with the builtin embedder under the same model name and
 * dimension stays searchable, and search quality is the builtin's.
 *
 *   node --import tsx bench/lib/fake-embedder.ts [dimension]
 *
 * Listens on 127.0.0.1 and a free port; tells its parent the base URL over
 * IPC (or prints it when run by hand); exits when the parent goes away.
 */
import { startFakeOpenAi } from '../../test/helpers/fake-openai.ts';

const dimension = Number(process.argv[2] ?? '384');
if (!Number.isInteger(dimension) || dimension < 1) throw new Error(`bad dimension ${process.argv[2]}`);
const fake = await startFakeOpenAi(dimension);
if (process.send === undefined) process.stdout.write(`${fake.baseUrl}\n`);
else {
  process.send({ baseUrl: fake.baseUrl });
  process.on('disconnect', () => process.exit(0));
}
