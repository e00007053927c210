import * as tf from '@tensorflow/tfjs-core';
import type { LearnerContext, LearnerFactory, Layer, Params } from '@metalearn/core';
import { EmbeddingLearner, commonConfigProperties, type EmbeddingLearnerConfig, type EpisodeOutput } from './embedding-learner.js';
import { l2normalize, matchingHead, matchingLogProbs, oneHot } from './heads.js';

export interface MatchingNetConfig extends EmbeddingLearnerConfig {
  /** multiplies the cosine similarities before the attention softmax (1 = the paper) */
  attentionScale: number;
}

export const matchingNetConfigSchema = {
  type: 'object',
  title: 'Matching Networks',
  additionalProperties: false,
  properties: {
    ...commonConfigProperties,
    attentionScale: { type: 'number', exclusiveMinimum: 0, default: 1, description: 'softmax temperature⁻¹ on cosine similarities (1 = Vinyals et al.)' },
  },
} as const;

/**
 * Matching Networks (Vinyals et al. 2016) without full-context embeddings: the query label
 * distribution is the softmax-over-cosine-similarity attention over the support embeddings applied
 * to their one-hot labels, ŷ = Σ a(x, x_i) y_i; training minimises −log ŷ_y on the queries. The
 * adapted classifier is the backbone plus a head holding the normalised support embeddings and their
 * labels as constants; it outputs log ŷ.
 */
export class MatchingNet extends EmbeddingLearner<MatchingNetConfig> {
  readonly id = 'matchingnet';

  constructor(config: MatchingNetConfig, ctx: LearnerContext) {
    super(config, ctx, 'matchingnet');
  }

  protected episodeOutput(es: tf.Tensor2D, ys: Int32Array, ways: number, eq: tf.Tensor2D, yq: Int32Array): EpisodeOutput {
    const logp = matchingLogProbs(eq, l2normalize(es), oneHot(ys, ways), this.config.attentionScale);
    const loss = tf.neg(tf.mean(tf.sum(tf.mul(oneHot(yq, ways), logp), 1))) as tf.Scalar;
    return { loss, logits: logp };
  }

  protected supportHead(es: tf.Tensor2D, ys: Int32Array, ways: number): { head: Layer; state: Params } {
    return {
      head: matchingHead({ ways, scale: this.config.attentionScale }),
      state: { support: l2normalize(es), labels: oneHot(ys, ways) },
    };
  }
}

export const matchingNetFactory: LearnerFactory<MatchingNetConfig> = {
  id: 'matchingnet',
  family: 'metric',
  description: 'Matching Networks (Vinyals et al. 2016): cosine attention over support embeddings (no full-context embeddings)',
  configSchema: matchingNetConfigSchema,
  create: (config, ctx) => new MatchingNet(config, ctx),
};
