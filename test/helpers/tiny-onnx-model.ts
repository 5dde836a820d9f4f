import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import protobuf from 'protobufjs';

/**
 * Writes a tiny, deterministic BERT-shaped model in the transformers.js layout
 * (`config.json`, `tokenizer.json`, `tokenizer_config.json`, `onnx/model.onnx`)
 * so the ONNX embedder can be exercised without network access.
 *
 * The graph is a bag-of-words encoder:
 *   last_hidden_state = (word_emb[input_ids] + type_emb[token_type_ids]) * attention_mask
 * so, after mean pooling, texts sharing words have a higher cosine similarity.
 */
export async function writeTinyOnnxModel(
  dir: string,
  opts: { dim?: number; vocab?: string[] } = {},
): Promise<{ modelDir: string; dimension: number }> {
  const dimension = opts.dim ?? 64;
  if (!Number.isInteger(dimension) || dimension < 1) {
    throw new Error(`dim must be a positive integer, got ${dimension}`);
  }
  const words = opts.vocab ?? DEFAULT_WORDS;
  const vocab = buildVocab(words);

  const modelDir = path.resolve(dir);
  await mkdir(path.join(modelDir, 'onnx'), { recursive: true });
  await Promise.all([
    writeFile(path.join(modelDir, 'onnx', 'model.onnx'), encodeModel(vocab.size, dimension)),
    writeJson(path.join(modelDir, 'config.json'), configJson(vocab.size, dimension)),
    writeJson(path.join(modelDir, 'tokenizer.json'), tokenizerJson(vocab)),
    writeJson(path.join(modelDir, 'tokenizer_config.json'), TOKENIZER_CONFIG),
  ]);
  return { modelDir, dimension };
}

const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;
const TYPE_VOCAB_SIZE = 2;
const MAX_LENGTH = 128;
const SPECIAL_TOKEN_SCALE = 0.1;

const DEFAULT_WORDS = `
  the a an and or of to in on is are was it this that i you we they my with for from at by not
  cat cats dog dogs sat mat ran park bird sings
  database query index server memory vector search code function error
  weather rain sun today tomorrow cold warm pizza cheese bread coffee morning evening
  red blue green big small fast slow good bad
  ##s ##ing ##ed . , ! ? ' - : ; ( )
`
  .trim()
  .split(/\s+/);

function buildVocab(words: readonly string[]): Map<string, number> {
  const vocab = new Map<string, number>();
  for (const token of [...SPECIAL_TOKENS, ...words]) {
    if (!vocab.has(token)) vocab.set(token, vocab.size);
  }
  return vocab;
}

// mulberry32: tiny, seedable, and identical across platforms.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function randomTable(rows: number, cols: number, seed: number, scale: number): Float32Array {
  const next = prng(seed);
  const table = new Float32Array(rows * cols);
  for (let i = 0; i < table.length; i++) table[i] = (next() * 2 - 1) * scale;
  return table;
}

function floatBytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return out;
}

function int64Bytes(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
  return out;
}

// A subset of onnx/onnx.proto (field numbers must match upstream exactly).
const ONNX_PROTO = `
syntax = "proto3";
package onnx;

message AttributeProto {
  string name = 1;
  string ref_attr_name = 21;
  string doc_string = 13;
  int32 type = 20;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  GraphProto g = 6;
  TypeProto tp = 14;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
}

message ValueInfoProto {
  string name = 1;
  TypeProto type = 2;
  string doc_string = 3;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  string domain = 7;
  repeated AttributeProto attribute = 5;
  string doc_string = 6;
}

message OperatorSetIdProto {
  string domain = 1;
  int64 version = 2;
}

message StringStringEntryProto {
  string key = 1;
  string value = 2;
}

message ModelProto {
  int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  string producer_name = 2;
  string producer_version = 3;
  string domain = 4;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  string name = 8;
  string doc_string = 12;
  bytes raw_data = 9;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  string denotation = 6;
}
`;

const DataType = { FLOAT: 1, INT64: 7 } as const;
const AttributeType = { INT: 2 } as const;

type Dim = number | string;

function tensorValueInfo(name: string, elemType: number, dims: readonly Dim[]) {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: elemType,
        shape: {
          dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })),
        },
      },
    },
  };
}

function encodeModel(vocabSize: number, dim: number): Uint8Array {
  const { root } = protobuf.parse(ONNX_PROTO, { keepCase: true });
  const ModelProto = root.lookupType('onnx.ModelProto');

  const wordEmbeddings = randomTable(vocabSize, dim, 0x5eed_0001, 1);
  // Special tokens occur in every text; damping them keeps unrelated texts apart.
  // buildVocab puts them first, so their ids are their SPECIAL_TOKENS indices.
  SPECIAL_TOKENS.forEach((token, row) => {
    const scale = token === '[PAD]' ? 0 : SPECIAL_TOKEN_SCALE;
    const vector = wordEmbeddings.subarray(row * dim, (row + 1) * dim);
    vector.forEach((value, i) => (vector[i] = value * scale));
  });
  // Small, so the type embedding (shared by every token) barely dilutes the word signal.
  const typeEmbeddings = randomTable(TYPE_VOCAB_SIZE, dim, 0x5eed_0002, 0.05);
  const tokenShape = ['batch_size', 'sequence_length'] as const;

  const model = {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    producer_name: 'engram-tiny-onnx-model',
    producer_version: '1',
    graph: {
      name: 'tiny_bert',
      node: [
        {
          op_type: 'Gather',
          name: 'word_gather',
          input: ['word_embeddings', 'input_ids'],
          output: ['word_vectors'],
        },
        {
          op_type: 'Gather',
          name: 'type_gather',
          input: ['token_type_embeddings', 'token_type_ids'],
          output: ['type_vectors'],
        },
        {
          op_type: 'Add',
          name: 'add_embeddings',
          input: ['word_vectors', 'type_vectors'],
          output: ['summed'],
        },
        {
          op_type: 'Cast',
          name: 'mask_to_float',
          input: ['attention_mask'],
          output: ['mask_float'],
          attribute: [{ name: 'to', type: AttributeType.INT, i: DataType.FLOAT }],
        },
        {
          op_type: 'Unsqueeze',
          name: 'mask_unsqueeze',
          input: ['mask_float', 'unsqueeze_axes'],
          output: ['mask_3d'],
        },
        {
          op_type: 'Mul',
          name: 'apply_mask',
          input: ['summed', 'mask_3d'],
          output: ['last_hidden_state'],
        },
      ],
      initializer: [
        {
          name: 'word_embeddings',
          data_type: DataType.FLOAT,
          dims: [vocabSize, dim],
          raw_data: floatBytes(wordEmbeddings),
        },
        {
          name: 'token_type_embeddings',
          data_type: DataType.FLOAT,
          dims: [TYPE_VOCAB_SIZE, dim],
          raw_data: floatBytes(typeEmbeddings),
        },
        {
          name: 'unsqueeze_axes',
          data_type: DataType.INT64,
          dims: [1],
          raw_data: int64Bytes([-1]),
        },
      ],
      input: [
        tensorValueInfo('input_ids', DataType.INT64, tokenShape),
        tensorValueInfo('attention_mask', DataType.INT64, tokenShape),
        tensorValueInfo('token_type_ids', DataType.INT64, tokenShape),
      ],
      output: [tensorValueInfo('last_hidden_state', DataType.FLOAT, [...tokenShape, dim])],
    },
  };

  const problem = ModelProto.verify(model);
  if (problem) throw new Error(`tiny ONNX model is malformed: ${problem}`);
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

function configJson(vocabSize: number, dim: number) {
  return {
    _name_or_path: 'engram/tiny-bert',
    architectures: ['BertModel'],
    model_type: 'bert',
    hidden_size: dim,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    intermediate_size: dim,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    max_position_embeddings: MAX_LENGTH,
    type_vocab_size: TYPE_VOCAB_SIZE,
    vocab_size: vocabSize,
    initializer_range: 0.02,
    layer_norm_eps: 1e-12,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    transformers_version: '4.40.0',
  };
}

function tokenizerJson(vocab: Map<string, number>) {
  const id = (token: (typeof SPECIAL_TOKENS)[number]): number => {
    const value = vocab.get(token);
    if (value === undefined) throw new Error(`special token ${token} missing from vocab`);
    return value;
  };
  const special = (token: string) => ({ SpecialToken: { id: token, type_id: 0 } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content) => ({
      id: id(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special('[CLS]'), { Sequence: { id: 'A', type_id: 0 } }, special('[SEP]')],
      pair: [
        special('[CLS]'),
        { Sequence: { id: 'A', type_id: 0 } },
        special('[SEP]'),
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [id('[CLS]')], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [id('[SEP]')], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab),
    },
  };
}

const TOKENIZER_CONFIG = {
  tokenizer_class: 'BertTokenizer',
  do_lower_case: true,
  strip_accents: null,
  tokenize_chinese_chars: true,
  clean_up_tokenization_spaces: true,
  model_max_length: MAX_LENGTH,
  pad_token: '[PAD]',
  unk_token: '[UNK]',
  cls_token: '[CLS]',
  sep_token: '[SEP]',
  mask_token: '[MASK]',
};

async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFile(file, `${JSON.stringify(value, null, 2)}\n`);
}
