import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { FeatureExtractionPipeline } from '@huggingface/transformers';
import { AppError, errors, isAppError } from '../errors.ts';
import type { Embedder } from '../ports/embedder.ts';

export interface OnnxEmbedderOptions {
  /**
   * Hugging Face model id (e.g. `Xenova/all-MiniLM-L6-v2`), or, with `modelDir`,
   * the name the local model's vectors are stored under.
   */
  model: string;
  /**
   * Directory holding the model in the transformers.js layout: `config.json`,
   * `tokenizer.json`, `tokenizer_config.json` and `onnx/model.onnx` (or
   * `onnx/model_quantized.onnx` when `quantized`). When set, only this directory
   * is read; nothing is downloaded.
   */
  modelDir?: string;
  /** Download the model from the Hugging Face Hub when it is not cached. */
  allowRemote: boolean;
  /** Where downloaded models are cached (transformers.js defaults to inside node_modules). */
  cacheDir?: string;
  /** Use the q8 `model_quantized.onnx` instead of the fp32 `model.onnx`. Default false. */
  quantized?: boolean;
}

type Transformers = typeof import('@huggingface/transformers');
type Dtype = 'q8' | 'fp32';

const PROBE_TEXT = 'dimension probe';
const REQUIRED_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'] as const;
const ONNX_FILE: Record<Dtype, string> = {
  fp32: 'onnx/model.onnx',
  q8: 'onnx/model_quantized.onnx',
};
const NETWORK_ERROR_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);
// ERROR is onnxruntime's level 3; its default (WARNING) prints graph-optimiser
// chatter such as unused-initializer notices for most exported HF models.
const ORT_LOG_SEVERITY_ERROR = 3;

/**
 * Local sentence embeddings: a transformers.js feature-extraction pipeline on
 * onnxruntime-node (CPU), mean pooled and L2 normalised.
 *
 * Caveat: transformers.js configuration (`env`) is process-global. `create()`
 * sets `env.allowLocalModels = true` and `env.allowRemoteModels = allowRemote`,
 * which also affects any other transformers.js user in the process; concurrent
 * `create()` calls with different `allowRemote` are last-writer-wins while
 * loading. Everything that can be passed per call (local-only, cache dir,
 * dtype, device) is, so a loaded embedder does not depend on `env` afterwards.
 */
export class OnnxEmbedder implements Embedder {
  readonly provider = 'onnx' as const;
  readonly model: string;
  readonly dimension: number;

  #extractor: FeatureExtractionPipeline;
  #closed: Promise<void> | undefined;

  private constructor(model: string, dimension: number, extractor: FeatureExtractionPipeline) {
    this.model = model;
    this.dimension = dimension;
    this.#extractor = extractor;
  }

  static async create(options: OnnxEmbedderOptions): Promise<OnnxEmbedder> {
    const model = options.model.trim();
    if (model === '') {
      throw new AppError('CONFIG_INVALID', 'ONNX embedder needs a model name');
    }
    const dtype: Dtype = options.quantized === true ? 'q8' : 'fp32';
    const modelDir = options.modelDir === undefined ? undefined : path.resolve(options.modelDir);
    if (modelDir !== undefined) await assertModelDir(modelDir, dtype);
    const cacheDir = options.cacheDir === undefined ? undefined : path.resolve(options.cacheDir);

    const transformers = await import('@huggingface/transformers');
    configureEnv(transformers.env, options.allowRemote);

    let extractor: FeatureExtractionPipeline;
    try {
      // An absolute path is not a valid Hub id, so transformers.js reads the
      // files straight from it instead of resolving against env.localModelPath,
      // which would be another piece of shared global state.
      extractor = await transformers.pipeline('feature-extraction', modelDir ?? model, {
        device: 'cpu',
        dtype,
        local_files_only: modelDir !== undefined || !options.allowRemote,
        ...(cacheDir === undefined ? {} : { cache_dir: cacheDir }),
        session_options: { logSeverityLevel: ORT_LOG_SEVERITY_ERROR },
      });
    } catch (error) {
      throw loadError(model, modelDir, cacheDir ?? transformers.env.cacheDir, error);
    }

    let dimension: number;
    try {
      const [probe] = await runPipeline(extractor, [PROBE_TEXT]);
      if (probe === undefined || probe.length === 0 || !probe.every(Number.isFinite)) {
        throw new Error('the probe embedding is empty or not finite');
      }
      dimension = probe.length;
    } catch (error) {
      await extractor.dispose().catch(() => undefined);
      throw new AppError(
        'CONFIG_INVALID',
        `ONNX model ${describeSource(model, modelDir)} loaded but could not embed text: ${messageOf(error)}`,
        { cause: error },
      );
    }
    return new OnnxEmbedder(model, dimension, extractor);
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    if (this.#closed !== undefined) {
      throw new AppError('EMBEDDER_UNAVAILABLE', `ONNX embedder for ${this.model} is closed`);
    }
    if (texts.length === 0) return [];
    let vectors: Float32Array[];
    try {
      vectors = await runPipeline(this.#extractor, texts);
    } catch (error) {
      throw isAppError(error) ? error : errors.embedderUnavailable(error);
    }
    for (const vector of vectors) {
      if (vector.length !== this.dimension) {
        throw errors.dimensionMismatch(this.model, this.dimension, vector.length);
      }
    }
    return vectors;
  }

  close(): Promise<void> {
    this.#closed ??= this.#extractor.dispose();
    return this.#closed;
  }
}

function configureEnv(env: Transformers['env'], allowRemote: boolean): void {
  // Needed both for modelDir and for local_files_only reads from the cache.
  env.allowLocalModels = true;
  env.allowRemoteModels = allowRemote;
}

async function runPipeline(extractor: FeatureExtractionPipeline, texts: readonly string[]): Promise<Float32Array[]> {
  const output = await extractor([...texts], { pooling: 'mean', normalize: true });
  const data: unknown = output.data;
  const dims: number[] = output.dims;
  const [rows, cols] = dims;
  if (dims.length !== 2 || rows !== texts.length || cols === undefined) {
    throw new Error(`expected pooled output of shape [${texts.length}, dim], got [${dims.join(', ')}]`);
  }
  if (!(data instanceof Float32Array)) {
    throw new TypeError(`expected float32 output, got ${output.type}`);
  }
  const vectors: Float32Array[] = [];
  for (let row = 0; row < rows; row++) vectors.push(data.slice(row * cols, (row + 1) * cols));
  return vectors;
}

async function assertModelDir(modelDir: string, dtype: Dtype): Promise<void> {
  if (!(await isDirectory(modelDir))) {
    throw new AppError('CONFIG_INVALID', `ONNX model directory ${modelDir} does not exist`, {
      details: { modelDir },
    });
  }
  const required = [...REQUIRED_FILES, ONNX_FILE[dtype]];
  const present = await Promise.all(required.map((file) => isFile(path.join(modelDir, file))));
  const missing = required.filter((_, i) => present[i] !== true);
  if (missing.length === 0) return;

  const other: Dtype = dtype === 'q8' ? 'fp32' : 'q8';
  const hint =
    missing.includes(ONNX_FILE[dtype]) && (await isFile(path.join(modelDir, ONNX_FILE[other])))
      ? ` (it has ${ONNX_FILE[other]}; set quantized: ${String(other === 'q8')})`
      : '';
  throw new AppError('CONFIG_INVALID', `ONNX model directory ${modelDir} is missing ${missing.join(', ')}${hint}`, {
    details: { modelDir, missing },
  });
}

function loadError(model: string, modelDir: string | undefined, cacheDir: string, error: unknown): AppError {
  const source = describeSource(model, modelDir);
  const message = messageOf(error);

  const notLocal = /file was not found locally at "([^"]+)"/.exec(message)?.[1];
  if (notLocal !== undefined) {
    // transformers.js reports only its last lookup (env.localModelPath), but for a
    // Hub id the cache directory is searched first and is where the file should go.
    const file = notLocal.split(`${model}/`).pop() ?? notLocal;
    const detail =
      modelDir === undefined
        ? `${file} is neither in the cache at ${cacheDir} nor at ${notLocal}; set allowRemote to download it or use modelDir`
        : `missing ${notLocal}`;
    return new AppError('CONFIG_INVALID', `ONNX model ${source} is not available locally: ${detail}`, {
      cause: error,
      details: { model, modelDir, cacheDir, missing: file },
    });
  }
  const remote = /^(Could not locate file|Unauthorized access to file)[^"]*"([^"]+)"/.exec(message);
  if (remote !== null) {
    return new AppError(
      'CONFIG_INVALID',
      `ONNX model ${source} could not be downloaded: ${remote[1]?.toLowerCase()} ${remote[2]}`,
      { cause: error, details: { model, url: remote[2] } },
    );
  }
  const networkCode = networkErrorCode(error);
  if (networkCode !== undefined) {
    return new AppError(
      'EMBEDDER_UNAVAILABLE',
      `ONNX model ${source} could not be downloaded (${networkCode}): ${message}`,
      { cause: error, details: { model } },
    );
  }
  return new AppError('CONFIG_INVALID', `ONNX model ${source} could not be loaded: ${message}`, {
    cause: error,
    details: { model, modelDir },
  });
}

function describeSource(model: string, modelDir: string | undefined): string {
  return modelDir === undefined ? model : `${model} (from ${modelDir})`;
}

function networkErrorCode(error: unknown): string | undefined {
  let fetchFailed = false;
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return code;
    fetchFailed ||= e.message === 'fetch failed';
    e = e.cause;
  }
  return fetchFailed ? 'fetch failed' : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
