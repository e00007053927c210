import * as tf from '@tensorflow/tfjs-core';
import type { Episode, LearnerContext, LearnerFactory, Layer, Params, StepContext, TaskGradient, TraceGraph } from '@metalearn/core';
import { BatchNorm, ExportContext, symbolicParams } from '@metalearn/core';
import { engineSchema, GraphEpisodeEngine, type TrainEngine } from './graph-engine.js';
import { EmbeddingLearner, commonConfigProperties, crossEntropy, type EmbeddingLearnerConfig, type EpisodeOutput } from './embedding-learner.js';
import { prototypeHead, prototypeLogits, prototypes, type Distance } from './heads.js';

export interface ProtoNetConfig extends EmbeddingLearnerConfig {
  /** squared Euclidean (Snell et al. 2017) or scaled cosine */
  distance: Distance;
  /** logit scale for the cosine distance (ignored for sqeuclidean) */
  cosineScale: number;
  /** training engine (default 'tfjs') */
  engine: TrainEngine;
}

export const protoNetConfigSchema = {
  type: 'object',
  title: 'Prototypical Networks',
  additionalProperties: false,
  properties: {
    ...commonConfigProperties,
    distance: { enum: ['sqeuclidean', 'cosine'], default: 'sqeuclidean', description: 'distance between query embeddings and class prototypes' },
    cosineScale: { type: 'number', exclusiveMinimum: 0, default: 10, description: 'logits = scale · cos (distance: cosine only)' },
    engine: engineSchema,
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

  private graphEngine: GraphEpisodeEngine | null = null;

  /** With engine 'onnxruntime', each episode is one onnxruntime graph (see {@link GraphEpisodeEngine}). */
  override taskGradients(episodes: Episode[], first: number, ctx: StepContext): TaskGradient[] {
    if ((this.config.engine ?? 'tfjs') !== 'onnxruntime') return super.taskGradients(episodes, first, ctx);
    this.graphEngine ??= new GraphEpisodeEngine('protonet', this.backbone, (g, es, eq, avg) => protoGraphLogits(g, es, eq, avg, this.config.distance, this.config.cosineScale));
    const momentum = (layer: string) => (this.backbone.layer(layer) as BatchNorm).momentum;
    return episodes.map((ep, i) => this.graphEngine!.taskGradient(first + i, ep, this.params, this.buffers, momentum));
  }

  override dispose(): void {
    this.graphEngine?.release();
    this.graphEngine = null;
    super.dispose();
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

/**
 * Query logits of a ProtoNet episode graph: prototypes = avg · support embeddings (graph values),
 * then the adapted classifier's own head layer ({@link prototypeHead}), so training and the exported
 * model share one head definition.
 */
export function protoGraphLogits(g: TraceGraph, es: string, eq: string, avg: string, distance: Distance, scale: number): string {
  const protos = g.addNode('MatMul', [avg, es]);
  const [ways, d] = g.shapeOf(protos) as [number, number];
  const ctx = new ExportContext(g);
  ctx.shape = [d];
  const head = prototypeHead({ ways, distance, scale });
  return head.toOnnx(g, symbolicParams(g, { prototypes: [ways, d] }, () => protos), eq, ctx);
}

export const protoNetFactory: LearnerFactory<ProtoNetConfig> = {
  id: 'protonet',
  family: 'metric',
  description: 'Prototypical Networks (Snell et al. 2017): nearest class mean in embedding space, squared Euclidean distance',
  configSchema: protoNetConfigSchema,
  create: (config, ctx) => new ProtoNet(config, ctx),
};
