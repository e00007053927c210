import * as tf from '@tensorflow/tfjs-core';
import {
  Rng,
  dataToTensors,
  tensorsToData,
  type Checkpoint,
  type Episode,
  type Family,
  type FewShotClassifier,
  type LabeledSet,
  type Layer,
  type LearnerContext,
  type MetaLearner,
  type Params,
  type Sequential,
  type StepResult,
  type TensorData,
} from '@metalearn/core';
import { sequentialClassifier } from '@metalearn/core';
import { Adam, stepDecayLr, type AdamOptions } from '@metalearn/core';
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
 * Base of metric learners that embed support and query with one backbone and classify queries from
 * the support embeddings in a single pass (no inner loop): ProtoNet, Matching Networks.
 * Meta-training: Adam on the backbone parameters over the mean query loss of the meta-batch
 * (support + query are embedded together, so batch norm sees the whole episode). Adaptation and
 * prediction use batch-norm running statistics, exactly as the exported ONNX graph does.
 */
export abstract class EmbeddingLearner<Cfg extends EmbeddingLearnerConfig> implements MetaLearner<Cfg> {
  abstract readonly id: string;
  readonly family: Family = 'metric';
  readonly backbone: Sequential;
  protected params: Params;
  protected buffers: Params;
  protected readonly adam: Adam;

  constructor(
    readonly config: Cfg,
    readonly ctx: LearnerContext,
    initTag: string,
  ) {
    this.backbone = buildBackbone(config.backbone, ctx.inputShape);
    if (this.backbone.outputShape.length !== 1) {
      throw new Error(`${initTag}: the backbone must produce flat embeddings, it gives per-example shape [${this.backbone.outputShape}]`);
    }
    this.params = this.backbone.init(new Rng(`${ctx.seed}/${initTag}/init`));
    this.buffers = this.backbone.initState();
    this.adam = new Adam(config.optimizer);
  }

  /** Embedding size d. */
  get embeddingSize(): number {
    return this.backbone.outputShape[0]!;
  }

  /** meta-updates applied so far */
  get iterations(): number {
    return this.adam.stepCount;
  }

  /** learning rate of the next meta-update */
  currentLr(): number {
    return stepDecayLr(this.config.optimizer.lr, this.adam.stepCount, this.config.lrSchedule.every, this.config.lrSchedule.factor);
  }

  /** Loss and query logits of one episode from its embeddings (inside the gradient tape). */
  protected abstract episodeOutput(embSupport: tf.Tensor2D, ySupport: Int32Array, ways: number, embQuery: tf.Tensor2D, yQuery: Int32Array): EpisodeOutput;

  /** The adapted state (plain tensors, owned by the caller) and the head layer that reads it. */
  protected abstract adaptedHead(embSupport: tf.Tensor2D, ySupport: Int32Array, ways: number): { head: Layer; state: Params };

  /** Embed a batch with the current parameters (eval mode: batch-norm running statistics). */
  embed(x: tf.Tensor): tf.Tensor2D {
    return this.backbone.apply(this.params, x, { training: false, state: this.buffers }) as tf.Tensor2D;
  }

  metaTrainStep(batch: Episode[]): StepResult {
    if (batch.length === 0) throw new Error(`${this.id}.metaTrainStep: empty meta-batch`);
    const names = Object.keys(this.params).sort();
    const lr = this.currentLr();
    let state = this.buffers;
    const created: Params[] = [];
    const preds: tf.Tensor[] = [];
    const f = (...ws: tf.Tensor[]): tf.Scalar => {
      const p: Params = {};
      names.forEach((k, i) => (p[k] = ws[i]!));
      let total: tf.Scalar = tf.scalar(0);
      for (const ep of batch) {
        const ns = ep.support.x.shape[0];
        const updates: Params = {};
        const x = tf.concat([ep.support.x, ep.query.x], 0);
        const emb = this.backbone.apply(p, x, { training: true, state, updates }) as tf.Tensor2D;
        if (Object.keys(updates).length > 0) {
          created.push(updates);
          state = updates;
        }
        const es = tf.slice(emb, [0, 0], [ns, -1]) as tf.Tensor2D;
        const eq = tf.slice(emb, [ns, 0], [-1, -1]) as tf.Tensor2D;
        const out = this.episodeOutput(es, ep.support.y, ep.ways, eq, ep.query.y);
        preds.push(tf.keep(tf.argMax(out.logits, 1)));
        total = tf.add(total, out.loss);
      }
      return tf.div(total, batch.length) as tf.Scalar;
    };
    const { value, grads } = tf.tidy(() => {
      const r = tf.valueAndGrads(f)(names.map((k) => this.params[k]!));
      return { value: r.value, grads: r.grads };
    });
    const loss = value.dataSync()[0]!;
    value.dispose();
    let correct = 0;
    let total = 0;
    preds.forEach((pr, i) => {
      const y = batch[i]!.query.y;
      const d = pr.dataSync();
      for (let j = 0; j < y.length; j++) if (d[j] === y[j]) correct++;
      total += y.length;
      pr.dispose();
    });
    const finalState = state;
    let gradNorm = 0;
    if (Number.isFinite(loss)) {
      gradNorm = Math.sqrt(tf.tidy(() => tf.addN(grads.map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
    }
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      // keep the last good parameters: no update, no new running statistics
      tf.dispose(grads);
      for (const u of created) tf.dispose(Object.values(u));
      return { loss: Number.isFinite(loss) ? NaN : loss, accuracy: total ? correct / total : NaN, metrics: { lr, gradNorm } };
    }
    const gmap: Params = {};
    names.forEach((k, i) => (gmap[k] = grads[i]!));
    const previous = this.params;
    this.params = this.adam.step(previous, gmap, lr);
    tf.dispose(Object.values(previous));
    tf.dispose(grads);
    if (finalState !== this.buffers) {
      for (const u of created) if (u !== finalState) tf.dispose(Object.values(u));
      const merged: Params = { ...this.buffers };
      for (const [k, t] of Object.entries(finalState)) {
        merged[k]!.dispose();
        merged[k] = t;
      }
      this.buffers = merged;
    }
    return { loss, accuracy: total ? correct / total : NaN, metrics: { lr, gradNorm } };
  }

  adapt(support: LabeledSet, ways: number): FewShotClassifier {
    if (support.x.shape[0] !== support.y.length) throw new Error(`${this.id}.adapt: ${support.x.shape[0]} support inputs for ${support.y.length} labels`);
    // the classifier owns clones (same data, own refcount) so later training cannot dispose them
    const params: Params = {};
    for (const [k, t] of Object.entries(this.params)) params[k] = tf.clone(t);
    const buffers: Params = {};
    for (const [k, t] of Object.entries(this.buffers)) buffers[k] = tf.clone(t);
    const emb = this.backbone.apply(params, support.x, { training: false, state: buffers }) as tf.Tensor2D;
    let adapted: { head: Layer; state: Params };
    try {
      adapted = this.adaptedHead(emb, support.y, ways);
    } finally {
      emb.dispose();
    }
    const { head, state } = adapted;
    const model = this.backbone.extend(head);
    const all: Params = { ...params };
    for (const [k, t] of Object.entries(state)) all[`${head.name}.${k}`] = t;
    return sequentialClassifier(model, all, { learner: this.id, ways, state: buffers });
  }

  state(): Checkpoint {
    const params: Record<string, TensorData> = { ...tensorsToData(this.params), ...tensorsToData(this.buffers) };
    return {
      format: 'metalearn-checkpoint',
      version: 1,
      learner: this.id,
      config: this.config,
      params,
      optimizer: this.adam.state(),
      progress: { iterations: this.adam.stepCount },
      meta: { inputShape: this.ctx.inputShape, seed: this.ctx.seed },
    };
  }

  load(c: Checkpoint): void {
    if (c.learner !== this.id) throw new Error(`${this.id}.load: checkpoint is for learner '${c.learner}'`);
    const want = this.backbone.stateShapes();
    const pData: Record<string, TensorData> = {};
    const bData: Record<string, TensorData> = {};
    for (const [k, v] of Object.entries(c.params)) (k in want ? bData : pData)[k] = v;
    const p = dataToTensors(pData);
    const b = dataToTensors(bData);
    try {
      this.backbone.checkParams(p, 'params');
      this.backbone.checkParams(b, 'state');
    } catch (e) {
      tf.dispose([...Object.values(p), ...Object.values(b)]);
      throw new Error(`${this.id}.load: checkpoint does not fit this learner's backbone: ${(e as Error).message}`);
    }
    tf.dispose([...Object.values(this.params), ...Object.values(this.buffers)]);
    this.params = p;
    this.buffers = b;
    this.adam.load(c.optimizer ?? { t: 0 });
  }

  dispose(): void {
    tf.dispose([...Object.values(this.params), ...Object.values(this.buffers)]);
    this.params = {};
    this.buffers = {};
    this.adam.dispose();
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
