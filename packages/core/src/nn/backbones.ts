import type { InitScheme, Layer } from './types.js';
import { BatchNorm, Conv1d, Conv2d, Dense, Flatten, GlobalAvgPool, MaxPool, ReLU } from './layers.js';
import { Sequential } from './sequential.js';

export interface Conv4Options {
  /** per-example image shape [height, width, channels], e.g. [28, 28, 1] or [84, 84, 3] */
  inputShape: number[];
  /** filters of every block (default 64); a list gives one per block */
  filters?: number | number[];
  /** number of blocks (default 4) */
  blocks?: number;
  /** batch-norm keeps running statistics (default true); false = batch statistics always (MAML) */
  trackRunningStats?: boolean;
  /** batch-norm momentum (default 0.1) */
  bnMomentum?: number;
  init?: InitScheme;
  /** end with Flatten (default true); false leaves the [h, w, filters] map */
  flatten?: boolean;
}

/**
 * The Conv-4 backbone of the few-shot literature: `blocks` × [conv 3×3 'same' (with bias), batch
 * norm, ReLU, max-pool 2×2] then Flatten. Layer names `block{i}.conv|bn|relu|pool`, `flatten`.
 * Embedding size: 64 for 28×28 inputs (map 1×1), 1600 for 84×84 (map 5×5×64). The flatten order is
 * tfjs's channels-last (h, w, c); PyTorch's `flatten(1)` on NCHW orders (c, h, w), so an 84×84
 * embedding is a permutation of PyTorch's (identical for 28×28, where the map is 1×1).
 */
export function conv4(o: Conv4Options): Sequential {
  const blocks = o.blocks ?? 4;
  if (!Number.isInteger(blocks) || blocks < 1) throw new Error(`conv4: option 'blocks' must be a positive integer, got ${JSON.stringify(o.blocks)}`);
  if (!Array.isArray(o.inputShape) || o.inputShape.length !== 3) throw new Error(`conv4: option 'inputShape' must be [height, width, channels], got ${JSON.stringify(o.inputShape)}`);
  const filters = Array.isArray(o.filters) ? o.filters : Array(blocks).fill(o.filters ?? 64);
  if (filters.length !== blocks) throw new Error(`conv4: option 'filters' lists ${filters.length} entries for ${blocks} blocks`);
  const layers: Layer[] = [];
  for (let i = 0; i < blocks; i++) {
    const b = `block${i + 1}`;
    layers.push(
      new Conv2d({ name: `${b}.conv`, filters: filters[i]!, kernelSize: 3, padding: 'same', init: o.init }),
      new BatchNorm({ name: `${b}.bn`, trackRunningStats: o.trackRunningStats, momentum: o.bnMomentum }),
      new ReLU({ name: `${b}.relu` }),
      new MaxPool({ name: `${b}.pool`, poolSize: 2 }),
    );
  }
  if (o.flatten ?? true) layers.push(new Flatten({ name: 'flatten' }));
  return new Sequential(layers, o.inputShape);
}

export interface MlpOptions {
  /** per-example input shape; anything of rank > 1 is flattened first */
  inputShape: number[];
  /** hidden layer widths (default [40, 40], the MAML regression net) */
  hidden?: number[];
  /** width of the final linear layer; omit for a feature extractor ending in the last hidden ReLU */
  outputs?: number;
  /** activation between layers (default 'relu') */
  activation?: 'relu';
  /** batch norm after every hidden linear layer (default false) */
  batchNorm?: boolean;
  trackRunningStats?: boolean;
  init?: InitScheme;
}

/** Multi-layer perceptron: [flatten] → (dense → [bn] → relu) per hidden width → [dense(outputs)]. Names `fc{i}`, `bn{i}`, `relu{i}`, `out`. */
export function mlp(o: MlpOptions): Sequential {
  const hidden = o.hidden ?? [40, 40];
  if (!Array.isArray(o.inputShape) || o.inputShape.length === 0) throw new Error(`mlp: option 'inputShape' must be a non-empty shape, got ${JSON.stringify(o.inputShape)}`);
  const layers: Layer[] = [];
  if (o.inputShape.length > 1) layers.push(new Flatten({ name: 'flatten' }));
  hidden.forEach((h, i) => {
    layers.push(new Dense({ name: `fc${i + 1}`, units: h, init: o.init }));
    if (o.batchNorm) layers.push(new BatchNorm({ name: `bn${i + 1}`, trackRunningStats: o.trackRunningStats }));
    layers.push(new ReLU({ name: `relu${i + 1}` }));
  });
  if (o.outputs !== undefined) layers.push(new Dense({ name: 'out', units: o.outputs, init: o.init }));
  if (layers.length === 0) throw new Error('mlp: no layers (give hidden widths or outputs)');
  return new Sequential(layers, o.inputShape);
}

export interface Conv1dEncoderOptions {
  /** [length, channels]; length may be -1 (any length) */
  inputShape: number[];
  /** filters per block (default [64, 64, 64]) */
  filters?: number[];
  /** kernel size per block (default [7, 5, 3], then 3) */
  kernelSizes?: number[];
  trackRunningStats?: boolean;
  init?: InitScheme;
}

/**
 * Encoder for multivariate time series [length, channels] (FCN-style): per block conv1d 'same' →
 * batch norm → ReLU, then global average pooling over time → [filters.at(-1)]. Handles any length
 * (declare it as -1). Names `block{i}.conv|bn|relu`, `gap`.
 */
export function conv1dEncoder(o: Conv1dEncoderOptions): Sequential {
  if (!Array.isArray(o.inputShape) || o.inputShape.length !== 2) throw new Error(`conv1dEncoder: option 'inputShape' must be [length, channels], got ${JSON.stringify(o.inputShape)}`);
  const filters = o.filters ?? [64, 64, 64];
  const ks = o.kernelSizes ?? filters.map((_, i) => [7, 5, 3][i] ?? 3);
  if (ks.length !== filters.length) throw new Error(`conv1dEncoder: 'kernelSizes' has ${ks.length} entries, 'filters' has ${filters.length}`);
  const layers: Layer[] = [];
  filters.forEach((f, i) => {
    const b = `block${i + 1}`;
    layers.push(
      new Conv1d({ name: `${b}.conv`, filters: f, kernelSize: ks[i]!, padding: 'same', init: o.init }),
      new BatchNorm({ name: `${b}.bn`, trackRunningStats: o.trackRunningStats }),
      new ReLU({ name: `${b}.relu` }),
    );
  });
  layers.push(new GlobalAvgPool({ name: 'gap' }));
  return new Sequential(layers, o.inputShape);
}
