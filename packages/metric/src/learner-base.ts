import * as tf from '@tensorflow/tfjs-core';
import {
  Rng,
  dataToTensors,
  flatData,
  fromFlat,
  sumTaskGradients,
  taskParallelStep,
  tensorsToData,
  toFlat,
  type FlatParams,
  type StepContext,
  type TaskGradient,
  type TaskParallelLearner,
  type Checkpoint,
  type Episode,
  type Family,
  type FewShotClassifier,
  type LabeledSet,
  type Layer,
  type LearnerContext,
  type MetaLearner,
  type Params,
  type RngState,
  type Sequential,
  type StepResult,
  type TensorData,
} from '@metalearn/core';
import { sequentialClassifier } from '@metalearn/core';
import { Adam, stepDecayLr } from '@metalearn/core';
import type { LrScheduleConfig, OptimizerConfig } from './embedding-learner.js';

/** Options every metric learner ({@link HeadedEmbeddingLearner}) has. */
export interface HeadedLearnerConfig {
  optimizer: OptimizerConfig;
  lrSchedule: LrScheduleConfig;
}

/** What a learner's forward pass may use inside the gradient tape. */
export interface ForwardTools {
  /**
   * Embed a batch with the parameters being differentiated, in training mode (batch-norm batch
   * statistics; the running statistics are updated, chained over calls).
   */
  embed(x: tf.Tensor): tf.Tensor2D;
  /** the learner's training randomness (pair sampling, distortions); saved in checkpoints */
  rng: Rng;
}

export interface HeadedEpisodeOutput {
  /** scalar loss of the episode */
  loss: tf.Scalar;
  /** query logits [q, ways] (for the reported accuracy) */
  logits: tf.Tensor2D;
}

/**
 * Base of the metric learners: a backbone plus an episode head, which may have trainable parameters
 * of its own (Siamese: the weighted-L1 weights; TapNet: the attention network) or none
 * (ProtoNet, Matching Networks: see {@link EmbeddingLearner}). Parameters are one
 * flat map: backbone keys plus head keys (`${headPrefix}.*`), all trained by Adam on the mean
 * episode loss of the meta-batch. Adaptation embeds the support set in eval mode (batch-norm
 * running statistics, as the exported ONNX graph does) and bakes the adapted state into a head
 * layer appended to the backbone.
 */
export abstract class HeadedEmbeddingLearner<Cfg extends HeadedLearnerConfig> implements MetaLearner<Cfg>, TaskParallelLearner {
  abstract readonly id: string;
  readonly family: Family = 'metric';
  protected params: Params;
  protected buffers: Params;
  protected readonly adam: Adam;
  protected rng: Rng;

  constructor(
    readonly config: Cfg,
    readonly ctx: LearnerContext,
    readonly backbone: Sequential,
    protected readonly initTag: string,
  ) {
    if (backbone.outputShape.length !== 1) {
      throw new Error(`${initTag}: the backbone must produce flat embeddings, it gives per-example shape [${backbone.outputShape}]`);
    }
    const initRng = new Rng(`${ctx.seed}/${initTag}/init`);
    this.params = { ...backbone.init(initRng), ...this.initHead(initRng.fork('head')) };
    this.buffers = backbone.initState();
    this.adam = new Adam(config.optimizer);
    this.rng = new Rng(`${ctx.seed}/${initTag}/train`);
  }

  /** Embedding size d. */
  get embeddingSize(): number {
    return this.backbone.outputShape[0]!;
  }

  /** meta-updates applied so far */
  get iterations(): number {
    return this.adam.stepCount;
  }

  currentLr(): number {
    return stepDecayLr(this.config.optimizer.lr, this.adam.stepCount, this.config.lrSchedule.every, this.config.lrSchedule.factor);
  }

  /** Fresh head parameters (full keys, e.g. `siamese.alpha`); must not collide with backbone keys. */
  protected abstract initHead(rng: Rng): Params;

  /** Shapes of the head parameters (full keys). */
  protected abstract headShapes(): Record<string, number[]>;

  /** Loss and query logits of one episode; `p` holds backbone and head parameters. */
  protected abstract episodeForward(p: Params, ep: Episode, tools: ForwardTools): HeadedEpisodeOutput;

  /** The adapted head layer and its state (new tensors owned by the caller) from the support embeddings. */
  protected abstract adaptedHead(p: Params, embSupport: tf.Tensor2D, ySupport: Int32Array, ways: number): { head: Layer; state: Params };

  /** A read-only view of the current parameters (backbone + head). */
  get parameters(): Readonly<Params> {
    return this.params;
  }

  /** Embed a batch with the current parameters (eval mode: batch-norm running statistics). */
  embed(x: tf.Tensor): tf.Tensor2D {
    return this.backbone.apply(this.params, x, { training: false, state: this.buffers }) as tf.Tensor2D;
  }

  /** One meta-update: {@link taskParallelStep} with no pool (the same maths a worker pool runs). */
  metaTrainStep(batch: Episode[]): StepResult {
    return taskParallelStep(this, batch);
  }

  /**
   * Validates the batch and draws the step's random seed from the learner's generator (main thread
   * only): task i of the step uses its own stream seeded by (that seed, i), whichever thread runs it.
   */
  beginStep(batch: Episode[]): StepContext {
    if (batch.length === 0) throw new Error(`${this.id}.metaTrainStep: empty meta-batch`);
    return { seed: `${this.rng.seed}/step/${this.rng.int(2 ** 31)}` };
  }

  /** Random stream of task `index` of a step. */
  private taskRng(ctx: StepContext, index: number): Rng {
    if (typeof ctx.seed !== 'string') throw new Error(`${this.id}: step context lacks its 'seed' (call beginStep)`);
    return new Rng(`${ctx.seed}/task/${index}`);
  }

  /**
   * Per episode: the gradient of its loss w.r.t. every parameter (backbone + head), its query
   * predictions, and the batch-norm running statistics after its forward passes (starting from the
   * step's statistics).
   */
  taskGradients(episodes: Episode[], first: number, ctx: StepContext): TaskGradient[] {
    const names = Object.keys(this.params).sort();
    return episodes.map((ep, i) => {
      const index = first + i;
      const rng = this.taskRng(ctx, index);
      let state = this.buffers;
      const created: Params[] = [];
      let pred: tf.Tensor | null = null;
      const f = (...ws: tf.Tensor[]): tf.Scalar => {
        const p: Params = {};
        names.forEach((k, j) => (p[k] = ws[j]!));
        const embed = (x: tf.Tensor): tf.Tensor2D => {
          const updates: Params = {};
          const emb = this.backbone.apply(p, x, { training: true, state, updates }) as tf.Tensor2D;
          if (Object.keys(updates).length > 0) {
            created.push(updates);
            state = updates;
          }
          return emb;
        };
        const out = this.episodeForward(p, ep, { embed, rng });
        pred = tf.keep(tf.argMax(out.logits, 1));
        return out.loss;
      };
      let value: tf.Scalar;
      let grads: tf.Tensor[];
      try {
        ({ value, grads } = tf.tidy(() => tf.valueAndGrads(f)(names.map((k) => this.params[k]!))));
      } catch (e) {
        for (const u of created) tf.dispose(Object.values(u));
        (pred as tf.Tensor | null)?.dispose();
        throw e;
      }
      const loss = value.dataSync()[0]!;
      value.dispose();
      const y = ep.query.y;
      let correct = 0;
      if (pred) {
        const d = (pred as tf.Tensor).dataSync();
        for (let j = 0; j < y.length; j++) if (d[j] === y[j]) correct++;
        (pred as tf.Tensor).dispose();
      }
      const g: Record<string, Float32Array> = {};
      names.forEach((k, j) => (g[k] = flatData(grads[j]!)));
      tf.dispose(grads);
      const buffers: Record<string, Float32Array> = {};
      if (state !== this.buffers) {
        const finalState = state;
        for (const k of Object.keys(this.buffers).sort()) buffers[k] = flatData(finalState[k] ?? this.buffers[k]!);
      }
      for (const u of created) tf.dispose(Object.values(u));
      return { index, loss, correct, total: y.length, grads: g, buffers };
    });
  }

  /**
   * Adam on the mean episode gradient (tasks summed in task order). Batch-norm running statistics
   * become the mean over the tasks of each task's statistics (every task starts from the step's; with
   * one task per step this is that task's chained update). A non-finite loss or gradient updates
   * nothing and reports the loss as NaN (or ±Infinity).
   */
  applyGradients(tasks: TaskGradient[], _ctx: StepContext): StepResult {
    const s = sumTaskGradients(tasks);
    const lr = this.currentLr();
    const loss = s.loss / s.n;
    const accuracy = s.total ? s.correct / s.total : NaN;
    const names = Object.keys(this.params).sort();
    const mean: Params = {};
    for (const k of names) {
      const g = s.grads[k];
      if (!g) throw new Error(`${this.id}.applyGradients: no gradient for parameter '${k}'`);
      mean[k] = tf.tidy(() => tf.div(tf.tensor(g, this.params[k]!.shape, 'float32'), s.n));
    }
    let gradNorm = NaN;
    if (Number.isFinite(loss)) gradNorm = Math.sqrt(tf.tidy(() => tf.addN(Object.values(mean).map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      // keep the last good parameters: no update, no new running statistics
      tf.dispose(Object.values(mean));
      return { loss: Number.isFinite(loss) ? NaN : loss, accuracy, metrics: { lr, gradNorm } };
    }
    const previous = this.params;
    this.params = this.adam.step(previous, mean, lr);
    tf.dispose(Object.values(previous));
    tf.dispose(Object.values(mean));
    const bufKeys = Object.keys(s.buffers);
    if (bufKeys.length) {
      const merged: Params = { ...this.buffers };
      for (const k of bufKeys) {
        const old = merged[k];
        if (!old) throw new Error(`${this.id}.applyGradients: unknown buffer '${k}'`);
        merged[k] = s.n === 1 ? tf.tensor(s.buffers[k]!, old.shape, 'float32') : tf.tidy(() => tf.div(tf.tensor(s.buffers[k]!, old.shape, 'float32'), s.n));
        old.dispose();
      }
      this.buffers = merged;
    }
    return { loss, accuracy, metrics: { lr, gradNorm } };
  }

  /** Parameters and batch-norm buffers (keys `param:<k>` / `buffer:<k>`) as flat arrays. */
  getParams(): FlatParams {
    const out: FlatParams = {};
    for (const [k, v] of Object.entries(toFlat(this.params))) out[`param:${k}`] = v;
    for (const [k, v] of Object.entries(toFlat(this.buffers))) out[`buffer:${k}`] = v;
    return out;
  }

  /** Replace parameters and buffers with a copy from {@link getParams} (same keys and shapes). */
  setParams(flat: FlatParams): void {
    const want = [...Object.keys(this.params).map((k) => `param:${k}`), ...Object.keys(this.buffers).map((k) => `buffer:${k}`)].sort();
    const got = Object.keys(flat).sort();
    const cur = (k: string): tf.Tensor => (k.startsWith('param:') ? this.params[k.slice(6)]! : this.buffers[k.slice(7)]!);
    const bad = want.filter((k) => !flat[k] || flat[k]!.shape.join('x') !== cur(k).shape.join('x'));
    if (bad.length || got.length !== want.length) throw new Error(`${this.id}.setParams: expected [${want.join(', ')}], got [${got.join(', ')}]${bad.length ? `; missing or wrong shape: ${bad.join(', ')}` : ''}`);
    const t = fromFlat(flat);
    const params: Params = {};
    const buffers: Params = {};
    for (const [k, v] of Object.entries(t)) (k.startsWith('param:') ? params : buffers)[k.slice(k.indexOf(':') + 1)] = v;
    tf.dispose([...Object.values(this.params), ...Object.values(this.buffers)]);
    this.params = params;
    this.buffers = buffers;
  }

  adapt(support: LabeledSet, ways: number): FewShotClassifier {
    if (support.x.shape[0] !== support.y.length) throw new Error(`${this.id}.adapt: ${support.x.shape[0]} support inputs for ${support.y.length} labels`);
    const backboneKeys = new Set(Object.keys(this.backbone.paramShapes()));
    // the classifier owns clones so later training cannot dispose them
    const params: Params = {};
    for (const [k, t] of Object.entries(this.params)) if (backboneKeys.has(k)) params[k] = tf.clone(t);
    const buffers: Params = {};
    for (const [k, t] of Object.entries(this.buffers)) buffers[k] = tf.clone(t);
    const emb = this.backbone.apply(params, support.x, { training: false, state: buffers }) as tf.Tensor2D;
    let adapted: { head: Layer; state: Params };
    try {
      adapted = this.adaptedHead(this.params, emb, support.y, ways);
    } catch (e) {
      tf.dispose([...Object.values(params), ...Object.values(buffers)]);
      throw e;
    } finally {
      emb.dispose();
    }
    const { head, state } = adapted;
    const model = this.backbone.extend(head);
    const all: Params = { ...params };
    for (const [k, t] of Object.entries(state)) all[`${head.name}.${k}`] = t;
    return sequentialClassifier(model, all, { learner: this.id, ways, state: buffers });
  }

  /** Extra JSON-able facts saved with the checkpoint (checked on load by {@link checkMeta}). */
  protected checkpointMeta(): Record<string, unknown> {
    return {};
  }

  /** Throw when a checkpoint's meta does not fit this learner. */
  protected checkMeta(_meta: Record<string, unknown>): void {}

  state(): Checkpoint {
    const params: Record<string, TensorData> = { ...tensorsToData(this.params), ...tensorsToData(this.buffers) };
    return {
      format: 'metalearn-checkpoint',
      version: 1,
      learner: this.id,
      config: this.config,
      params,
      optimizer: this.adam.state(),
      rng: this.rng.state(),
      progress: { iterations: this.adam.stepCount },
      meta: { inputShape: this.ctx.inputShape, seed: this.ctx.seed, ...this.checkpointMeta() },
    };
  }

  load(c: Checkpoint): void {
    if (c.learner !== this.id) throw new Error(`${this.id}.load: checkpoint is for learner '${c.learner}'`);
    this.checkMeta(c.meta ?? {});
    const stateKeys = this.backbone.stateShapes();
    const headShapes = this.headShapes();
    const bbData: Record<string, TensorData> = {};
    const headData: Record<string, TensorData> = {};
    const bufData: Record<string, TensorData> = {};
    for (const [k, v] of Object.entries(c.params)) (k in stateKeys ? bufData : k in headShapes ? headData : bbData)[k] = v;
    const problems: string[] = [];
    for (const [k, s] of Object.entries(headShapes)) {
      const d = headData[k];
      if (!d) problems.push(`missing head parameter '${k}'`);
      else if (d.shape.length !== s.length || d.shape.some((x, i) => x !== s[i])) problems.push(`head parameter '${k}' has shape [${d.shape}], expected [${s}]`);
    }
    if (problems.length) throw new Error(`${this.id}.load: checkpoint does not fit this learner: ${problems.join('; ')}`);
    const p = dataToTensors(bbData);
    const b = dataToTensors(bufData);
    try {
      this.backbone.checkParams(p, 'params');
      this.backbone.checkParams(b, 'state');
    } catch (e) {
      tf.dispose([...Object.values(p), ...Object.values(b)]);
      throw new Error(`${this.id}.load: checkpoint does not fit this learner's backbone: ${(e as Error).message}`);
    }
    const h = dataToTensors(headData);
    tf.dispose([...Object.values(this.params), ...Object.values(this.buffers)]);
    this.params = { ...p, ...h };
    this.buffers = b;
    this.adam.load(c.optimizer ?? { t: 0 });
    if (c.rng) this.rng = Rng.fromState(c.rng as RngState);
  }

  dispose(): void {
    tf.dispose([...Object.values(this.params), ...Object.values(this.buffers)]);
    this.params = {};
    this.buffers = {};
    this.adam.dispose();
  }
}

/** Numerically stable binary cross-entropy with logits, elementwise: softplus(z) − t·z. */
export function bceWithLogits(z: tf.Tensor, t: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.sub(tf.add(tf.relu(z), tf.log(tf.add(1, tf.exp(tf.neg(tf.abs(z)))))), tf.mul(t, z)));
}
