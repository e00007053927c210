import { conv1dEncoder, conv4, mlp, type InitScheme, type Sequential } from '@metalearn/core';

/** Backbone choice + its options, as written in a pipeline file under `learner.backbone`. */
export interface BackboneConfig {
  type: 'conv4' | 'mlp' | 'conv1d';
  /** conv4: filters of every block (or one per block); conv1d: filters per block */
  filters?: number | number[];
  /** conv4: number of blocks */
  blocks?: number;
  /** mlp: hidden widths */
  hidden?: number[];
  /** mlp: batch norm after hidden layers */
  batchNorm?: boolean;
  /** conv1d: kernel size per block */
  kernelSizes?: number[];
  /** batch-norm momentum (conv4) */
  bnMomentum?: number;
  init?: InitScheme;
}

const posInt = { type: 'integer', minimum: 1 };

/** JSON Schema of {@link BackboneConfig} (defaults: conv4, 64 filters, 4 blocks). */
export const backboneSchema = {
  type: 'object',
  description: 'embedding network: conv4 (images), mlp (flat features or small images), conv1d (time series [length, channels])',
  additionalProperties: false,
  default: {},
  properties: {
    type: { enum: ['conv4', 'mlp', 'conv1d'], default: 'conv4' },
    filters: { anyOf: [posInt, { type: 'array', items: posInt, minItems: 1 }], description: 'conv4: filters per block (default 64); conv1d: list per block (default [64, 64, 64])' },
    blocks: { ...posInt, description: 'conv4: number of conv blocks (default 4)' },
    hidden: { type: 'array', items: posInt, minItems: 1, description: 'mlp: hidden widths (default [40, 40])' },
    batchNorm: { type: 'boolean', description: 'mlp: batch norm after each hidden layer (default false)' },
    kernelSizes: { type: 'array', items: posInt, minItems: 1, description: 'conv1d: kernel size per block (default [7, 5, 3])' },
    bnMomentum: { type: 'number', minimum: 0, maximum: 1, description: 'batch-norm running-stat momentum (default 0.1)' },
    init: { enum: ['pytorch', 'he', 'glorot'], description: 'weight initialisation (default pytorch)' },
  },
} as const;

/** Build the embedding network for per-example inputs of `inputShape`. */
export function buildBackbone(cfg: BackboneConfig, inputShape: number[]): Sequential {
  switch (cfg.type) {
    case 'conv4':
      if (inputShape.length !== 3) throw new Error(`backbone conv4 needs image inputs [height, width, channels], the dataset gives [${inputShape}] (use mlp or conv1d)`);
      return conv4({ inputShape, filters: cfg.filters, blocks: cfg.blocks, bnMomentum: cfg.bnMomentum, init: cfg.init });
    case 'mlp':
      return mlp({ inputShape, hidden: cfg.hidden, batchNorm: cfg.batchNorm, init: cfg.init });
    case 'conv1d': {
      if (inputShape.length !== 2) throw new Error(`backbone conv1d needs sequence inputs [length, channels], the dataset gives [${inputShape}]`);
      const filters = cfg.filters === undefined ? undefined : Array.isArray(cfg.filters) ? cfg.filters : [cfg.filters, cfg.filters, cfg.filters];
      return conv1dEncoder({ inputShape, filters, kernelSizes: cfg.kernelSizes, init: cfg.init });
    }
    default:
      throw new Error(`unknown backbone type '${String((cfg as { type: unknown }).type)}' (allowed: conv4, mlp, conv1d)`);
  }
}
