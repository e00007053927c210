import * as tf from '@tensorflow/tfjs-core';
import type { LearnerContext, LearnerFactory, Layer, Params } from '@metalearn/core';
import { EmbeddingLearner, commonConfigProperties, crossEntropy, type EmbeddingLearnerConfig, type EpisodeOutput } from './embedding-learner.js';
import { prototypeHead, prototypeLogits, prototypes, type Distance } from './heads.js';

export interface ProtoNetConfig extends EmbeddingLearnerConfig {
  /** squared Euclidean (Snell et al. 2017) or scaled cosine */
  distance: Distance;
  /** logit scale for the cosine distance (ignored for sqeuclidean) */
  cosineScale: number;
}

export const protoNetConfigSchema = {
  type: 'object',
  title: 'Prototypical Networks',
  additionalProperties: false,
  properties: {
    ...commonConfigProperties,
    distance: { enum: ['sqeuclidean', 'cosine'], default: 'sqeuclidean', description: 'distance between query embeddings and class prototypes' },
    cosineScale: { type: 'number', exclusiveMinimum: 0, default: 10, description: 'logits = scale · cos (distance: cosine only)' },
  },
} as const;

/**
 * Prototypical Networks (Snell, Swersky & Zemel 2017): a class prototype is the mean embedding of
 * its support examples; a query's logits are the negative squared Euclidean distances to the
 * prototypes; training minimises the query cross-entropy over episodes. Train and test episodes may
 * have different ways / shots (the paper trains 60-way, tests 5-way). Adaptation is one forward pass;
 * the adapted classifier is the backbone plus a prototype head whose prototypes are constants.
 */
export class ProtoNet extends EmbeddingLearner<ProtoNetConfig> {
  readonly id = 'protonet';

  constructor(config: ProtoNetConfig, ctx: LearnerContext) {
    super(config, ctx, 'protonet');
  }

  protected episodeOutput(es: tf.Tensor2D, ys: Int32Array, ways: number, eq: tf.Tensor2D, yq: Int32Array): EpisodeOutput {
    const protos = prototypes(es, ys, ways);
    const logits = prototypeLogits(eq, protos, this.config.distance, this.config.cosineScale);
    return { loss: crossEntropy(logits, yq), logits };
  }

  protected supportHead(es: tf.Tensor2D, ys: Int32Array, ways: number): { head: Layer; state: Params } {
    return {
      head: prototypeHead({ ways, distance: this.config.distance, scale: this.config.cosineScale }),
      state: { prototypes: prototypes(es, ys, ways) },
    };
  }
}

export const protoNetFactory: LearnerFactory<ProtoNetConfig> = {
  id: 'protonet',
  family: 'metric',
  description: 'Prototypical Networks (Snell et al. 2017): nearest class mean in embedding space, squared Euclidean distance',
  configSchema: protoNetConfigSchema,
  create: (config, ctx) => new ProtoNet(config, ctx),
};
