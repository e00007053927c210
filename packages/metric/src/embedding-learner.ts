import * as tf from '@tensorflow/tfjs-core';
import type { AdamOptions, Episode, Layer, LearnerContext, Params } from '@metalearn/core';
import { HeadedEmbeddingLearner, type ForwardTools, type HeadedEpisodeOutput } from './learner-base.js';
import { backboneSchema, buildBackbone, type BackboneConfig } from './backbone.js';

export interface OptimizerConfig extends Omit<AdamOptions, 'clipNorm'> {
  clipNorm?: number;
}

export interface LrScheduleConfig {
  /** halve (× factor) the learning rate every this many meta-updates; 0 = constant */
  every: number;
  factor: number;
}

/** Options shared by the embedding-based (metric) learners. */
export interface EmbeddingLearnerConfig {
  backbone: BackboneConfig;
  optimizer: OptimizerConfig;
  lrSchedule: LrScheduleConfig;
}

/** JSON Schema properties shared by the metric learners' configs. */
export const commonConfigProperties = {
  backbone: backboneSchema,
  optimizer: {
    type: 'object',
    description: 'Adam (Kingma & Ba 2015) on the backbone parameters',
    additionalProperties: false,
    default: {},
    properties: {
      lr: { type: 'number', exclusiveMinimum: 0, default: 0.001 },
      beta1: { type: 'number', minimum: 0, exclusiveMaximum: 1, default: 0.9 },
      beta2: { type: 'number', minimum: 0, exclusiveMaximum: 1, default: 0.999 },
      epsilon: { type: 'number', exclusiveMinimum: 0, default: 1e-8 },
      weightDecay: { type: 'number', minimum: 0, default: 0 },
    },
  },
  lrSchedule: {
    type: 'object',
    description: 'step decay: lr × factor^floor(iteration / every) (ProtoNet: halve every 2000 episodes)',
    additionalProperties: false,
    default: {},
    properties: {
      every: { type: 'integer', minimum: 0, default: 2000, description: 'meta-updates between decays; 0 = constant' },
      factor: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.5 },
    },
  },
} as const;

/** What a learner's episode head computes inside the gradient tape. */
export interface EpisodeOutput {
  /** mean query loss (scalar) */
  loss: tf.Scalar;
  /** query logits [q, ways] */
  logits: tf.Tensor2D;
}

/**
 * Base of metric learners whose head has no trainable parameters and that classify queries from the
 * support embeddings in a single pass (no inner loop): ProtoNet, Matching Networks. Support and query
 * are embedded together in training, so batch norm sees the whole episode. Everything else (Adam,
 * the lr schedule, batch-norm buffers, NaN handling, adaptation, checkpoints) is
 * {@link HeadedEmbeddingLearner}'s, with an empty head.
 */
export abstract class EmbeddingLearner<Cfg extends EmbeddingLearnerConfig> extends HeadedEmbeddingLearner<Cfg> {
  constructor(config: Cfg, ctx: LearnerContext, initTag: string) {
    super(config, ctx, buildBackbone(config.backbone, ctx.inputShape), initTag);
  }

  /** Loss and query logits of one episode from its embeddings (inside the gradient tape). */
  protected abstract episodeOutput(embSupport: tf.Tensor2D, ySupport: Int32Array, ways: number, embQuery: tf.Tensor2D, yQuery: Int32Array): EpisodeOutput;

  /** The adapted state (plain tensors, owned by the caller) and the head layer that reads it. */
  protected abstract supportHead(embSupport: tf.Tensor2D, ySupport: Int32Array, ways: number): { head: Layer; state: Params };

  protected initHead(): Params {
    return {};
  }

  protected headShapes(): Record<string, number[]> {
    return {};
  }

  protected episodeForward(_p: Params, ep: Episode, tools: ForwardTools): HeadedEpisodeOutput {
    const ns = ep.support.x.shape[0];
    const emb = tools.embed(tf.concat([ep.support.x, ep.query.x], 0));
    const es = tf.slice(emb, [0, 0], [ns, -1]) as tf.Tensor2D;
    const eq = tf.slice(emb, [ns, 0], [-1, -1]) as tf.Tensor2D;
    return this.episodeOutput(es, ep.support.y, ep.ways, eq, ep.query.y);
  }

  protected adaptedHead(_p: Params, embSupport: tf.Tensor2D, ySupport: Int32Array, ways: number): { head: Layer; state: Params } {
    return this.supportHead(embSupport, ySupport, ways);
  }
}

/** Mean cross-entropy of logits [q, ways] against integer labels. */
export function crossEntropy(logits: tf.Tensor2D, y: Int32Array): tf.Scalar {
  return tf.tidy(() => {
    const ways = logits.shape[1];
    const onehot = tf.oneHot(tf.tensor1d(y, 'int32'), ways);
    return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  });
}
