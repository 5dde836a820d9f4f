import type { EmbeddingConfig } from '../config/config.ts';
import { AppError } from '../errors.ts';
import type { Embedder } from '../ports/embedder.ts';
import { BuiltinEmbedder } from './builtin.embedder.ts';
import { OpenAiEmbedder } from './openai.embedder.ts';

/** Creates the configured provider (without the resilience/caching wrapper). */
export async function createEmbedder(config: EmbeddingConfig, cacheDir: string): Promise<Embedder> {
  switch (config.provider) {
    case 'builtin':
      return new BuiltinEmbedder(config.model, config.dimension);
    case 'openai':
      return new OpenAiEmbedder({
        baseUrl: config.openaiBaseUrl,
        apiKey: config.openaiApiKey,
        model: config.model,
        dimension: config.dimension,
        timeoutMs: config.timeoutMs,
      });
    case 'onnx': {
      // Loaded lazily: onnxruntime is heavy and only this provider needs it.
      const { OnnxEmbedder } = await import('./onnx.embedder.ts');
      return OnnxEmbedder.create({
        model: config.model,
        modelDir: config.modelDir,
        allowRemote: config.allowDownload,
        cacheDir,
      });
    }
    default: {
      const never: never = config.provider;
      throw new AppError('CONFIG_INVALID', `unknown embedder ${String(never)}`);
    }
  }
}
