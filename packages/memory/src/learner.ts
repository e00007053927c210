/**
 * `MetaLearner` implementations for the Santoro sequence protocol: MANN and the plain LSTM
 * meta-learner share this class; they differ only in their {@link SequenceModel}.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  Rng,
  argmaxRows,
  type Checkpoint,
  type Episode,
  type FewShotClassifier,
  type InstanceAccuracy,
  type LabeledSet,
  type LearnerContext,
  type LearnerFactory,
  type MetaLearner,
  type OnnxModel,
  type SequenceEvaluator,
  type StepContext,
  type StepResult,
  type FlatParams,
  type TaskGradient,
  type TaskParallelLearner,
  taskParallelStep,
} from '@metalearn/core';
import { oneHotF } from './addressing.js';
import { Adam } from '@metalearn/core';
import { checkpointParams, loadCheckpointParams, toVariables } from './variables.js';
import { applyMeanGradients, setFlatVariables, stepContext, taskRng, variableTaskGrads, variablesToFlat } from './parallel.js';
import { lstmMetaConfigSchema, mannConfigSchema, resolveConfig, type LstmMetaConfig, type MannConfig, type SeqLearnerConfigBase } from './config.js';
import type { Params } from './core-nn.js';
import { LstmModel, MannModel, type SeqState, type SequenceModel } from './models.js';
import { accuracyByInstance, buildBatch, episodesToSequences, runSequence, sequenceLoss, sequenceOrder, type SequenceBatch } from './sequence.js';
import { exportSequenceStep } from './onnx-export.js';

export const INSTANCE_METRICS = [1, 2, 3, 5, 10];

/**
 * Task-parallel (core's `TaskParallelLearner`): a worker's share of the meta-batch runs as one batch of
 * sequences and comes back as one result covering those tasks (`TaskGradient.count`), since a batched
 * step costs far less than per-episode steps. Each episode's item order comes from the step seed and
 * its task index, so the sums differ between worker counts only by float summation order.
 */
export class SequenceLearner<Cfg extends SeqLearnerConfigBase> implements MetaLearner<Cfg>, SequenceEvaluator, TaskParallelLearner {
  readonly family = 'memory' as const;
  readonly params: Record<string, tf.Variable>;
  private readonly adam: Adam;
  private rng: Rng;
  private steps = 0;
  private episodes = 0;
  private adaptCalls = 0;
  private disposed = false;

  constructor(readonly id: string, readonly config: Cfg, readonly model: SequenceModel, readonly ctx: LearnerContext) {
    this.rng = new Rng(ctx.seed);
    const init = model.init(this.rng.fork('init'));
    this.params = toVariables(init, id);
    this.adam = new Adam({ lr: config.lr, clipNorm: config.gradClip });
  }

  private check(): void {
    if (this.disposed) throw new Error(`${this.id}: learner was disposed`);
  }

  /** Loss of a sequence batch (for tests and gradient checks). */
  loss(batch: SequenceBatch, params: Params = this.params): tf.Scalar {
    return tf.tidy(() => sequenceLoss(runSequence(this.model, params, batch.x, batch.yPrev).logits, batch.target));
  }

  /** One outer update: {@link taskParallelStep} with no pool (the maths a worker pool runs too). */
  metaTrainStep(batch: Episode[]): StepResult {
    this.check();
    return taskParallelStep(this, batch);
  }

  beginStep(batch: Episode[]): StepContext {
    this.check();
    if (!batch.length) throw new Error(`${this.id}.metaTrainStep: empty meta-batch`);
    const T = (e: Episode) => e.support.y.length + e.query.y.length;
    for (const [i, e] of batch.entries()) {
      if (e.ways > this.model.classes) throw new Error(`episode ${i}: ${e.ways} ways but the learner has ${this.model.classes} output classes (config 'classes')`);
      if (T(e) !== T(batch[0]!)) throw new Error(`episode ${i}: ${T(e)} items, but episode 0 has ${T(batch[0]!)}; a meta-batch needs equal lengths`);
    }
    return stepContext(this.rng, batch.length);
  }

  /**
   * Tasks `first` … `first + n − 1` as one batch of sequences: one result covering all of them, with
   * the batch-mean loss and gradient scaled to sums over the n episodes (every sequence has the same
   * length, so the combined mean equals the mean over the whole meta-batch) and the per-instance
   * correct / count sums as metrics.
   */
  taskGradients(episodes: Episode[], first: number, ctx: StepContext): TaskGradient[] {
    this.check();
    const seq = episodesToSequences(episodes, this.model.classes, (e) => taskRng(this.id, ctx, first + e));
    try {
      let pred: Int32Array | undefined;
      const { loss, grads } = variableTaskGrads(this.params, () => {
        const { logits } = runSequence(this.model, this.params, seq.x, seq.yPrev);
        pred = argmaxRows(logits.dataSync(), seq.B * seq.T, this.model.classes);
        return sequenceLoss(logits, seq.target);
      });
      const n = episodes.length;
      for (const g of Object.values(grads)) for (let j = 0; j < g.length; j++) g[j] = g[j]! * n;
      const byInst = accuracyByInstance(pred!, seq.target, seq.instance);
      let ok = 0;
      for (let i = 0; i < pred!.length; i++) if (pred![i] === seq.target[i]) ok++;
      const metrics: Record<string, number> = {};
      for (const k of INSTANCE_METRICS) {
        metrics[`correct_inst${k}`] = byInst.correct[k]!;
        metrics[`count_inst${k}`] = byInst.count[k]!;
      }
      return [{ index: first, count: n, loss: loss * n, correct: ok, total: pred!.length, grads, metrics }];
    } finally {
      seq.dispose();
    }
  }

  /** Mean over the episodes of the tasks' sums → one Adam step (clipped); loss, accuracy, acc_instK. */
  applyGradients(tasks: TaskGradient[], _ctx: StepContext): StepResult {
    this.check();
    const s = applyMeanGradients(this.id, this.params, this.adam, tasks);
    this.steps++;
    this.episodes += s.n;
    const metrics: Record<string, number> = { gradNorm: s.gradNorm };
    for (const k of INSTANCE_METRICS) {
      const c = s.metrics[`count_inst${k}`] ?? 0;
      if (c > 0) metrics[`acc_inst${k}`] = s.metrics[`correct_inst${k}`]! / c;
    }
    return { loss: s.loss / s.n, accuracy: s.correct / s.total, metrics };
  }

  getParams(): FlatParams {
    return variablesToFlat(this.params);
  }

  setParams(p: FlatParams): void {
    setFlatVariables(this.id, p, this.params);
  }

  /**
   * Accuracy by instance number over whole episodes (support and query items shuffled into one
   * sequence, as in Santoro's protocol); no parameter update.
   */
  evaluateSequences(episodes: Episode[], rng: Rng, maxInstance = 10): InstanceAccuracy {
    this.check();
    const seq = episodesToSequences(episodes, this.model.classes, rng);
    try {
      const pred = tf.tidy(() => {
        const { logits } = runSequence(this.model, this.params, seq.x, seq.yPrev);
        return argmaxRows(logits.dataSync(), seq.B * seq.T, this.model.classes);
      });
      const { correct, count } = accuracyByInstance(pred, seq.target, seq.instance, maxInstance);
      return { accuracy: correct.map((c, k) => (count[k]! > 0 ? c / count[k]! : NaN)), count };
    } finally {
      seq.dispose();
    }
  }

  /**
   * Stream the support set through the network (shuffled, labels one step late), then classify each
   * query from the resulting state with the last support label as its y_{t-1} input.
   */
  adapt(support: LabeledSet, ways: number): FewShotClassifier {
    this.check();
    if (ways > this.model.classes) throw new Error(`${this.id}.adapt: ${ways} ways but config 'classes' is ${this.model.classes}`);
    const n = support.y.length;
    if (n === 0) throw new Error(`${this.id}.adapt: empty support set`);
    const order = sequenceOrder(n, new Rng(`${this.ctx.seed}/adapt/${this.adaptCalls++}`));
    const labels = order.map((i) => support.y[i]!);
    const xs = tf.tidy(() => tf.gather(tf.reshape(support.x, [n, -1]), tf.tensor1d(order, 'int32')) as tf.Tensor2D);
    const seq = buildBatch([xs], [labels], this.model.classes);
    const state: SeqState = tf.tidy(() => {
      const s = runSequence(this.model, this.params, seq.x, seq.yPrev).state;
      return s;
    });
    seq.dispose();
    for (const t of Object.values(state)) tf.keep(t);
    const lastLabel = labels[labels.length - 1]!;
    const snapshot: Params = {};
    for (const [k, v] of Object.entries(this.params)) snapshot[k] = tf.clone(v);
    const model = this.model;
    const id = this.id;
    const inputShape = [...this.ctx.inputShape];
    return {
      predict: (x: tf.Tensor) =>
        tf.tidy(() => {
          const q = x.shape[0];
          const xq = tf.reshape(x, [q, -1]) as tf.Tensor2D;
          const s: SeqState = {};
          for (const [k, v] of Object.entries(state)) s[k] = tf.tile(v, [q, ...v.shape.slice(1).map(() => 1)]);
          const yPrev = oneHotF(new Array<number>(q).fill(lastLabel), model.classes) as tf.Tensor2D;
          const { logits } = model.step(snapshot, s, xq, yPrev);
          return tf.slice(logits, [0, 0], [q, ways]);
        }),
      toOnnx: (): OnnxModel => exportSequenceStep(model, snapshot, { bakeState: state, bakeLabel: lastLabel, ways, name: `${id}-adapted`, inputShape: inputShape }),
      dispose: () => {
        for (const t of [...Object.values(state), ...Object.values(snapshot)]) t.dispose();
      },
    };
  }

  /** ONNX step graph with explicit state inputs/outputs (see exportSequenceStep). */
  exportStepOnnx(): OnnxModel {
    this.check();
    return exportSequenceStep(this.model, this.params, { name: `${this.id}-step` });
  }

  state(): Checkpoint {
    this.check();
    const params = checkpointParams(this.params);
    return {
      format: 'metalearn-checkpoint',
      version: 1,
      learner: this.id,
      config: { ...this.config },
      params,
      optimizer: this.adam.state(),
      rng: this.rng.state(),
      progress: { steps: this.steps, episodes: this.episodes, adaptCalls: this.adaptCalls },
      meta: { inputShape: this.ctx.inputShape, seed: this.ctx.seed },
    };
  }

  load(c: Checkpoint): void {
    this.check();
    loadCheckpointParams(this.id, c, this.params);
    if (c.optimizer) this.adam.load(c.optimizer);
    if (c.rng) this.rng = Rng.fromState(c.rng);
    this.steps = c.progress?.steps ?? 0;
    this.episodes = c.progress?.episodes ?? 0;
    this.adaptCalls = c.progress?.adaptCalls ?? 0;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of Object.values(this.params)) v.dispose();
    this.adam.dispose();
  }
}

function flatSize(ctx: LearnerContext, id: string): number {
  if (!Array.isArray(ctx.inputShape) || ctx.inputShape.length === 0 || ctx.inputShape.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new Error(`${id}: context inputShape must be positive integers, got ${JSON.stringify(ctx.inputShape)}`);
  }
  return ctx.inputShape.reduce((a, b) => a * b, 1);
}

export const mannFactory: LearnerFactory<Partial<MannConfig>> = {
  id: 'mann',
  family: 'memory',
  description: 'Memory-Augmented Neural Network (Santoro et al. 2016): LSTM controller, LRUA memory writes, cosine content reads',
  configSchema: mannConfigSchema as unknown as Record<string, unknown>,
  create(raw, ctx) {
    const cfg = resolveConfig<MannConfig>('mann', mannConfigSchema, raw);
    const model = new MannModel(flatSize(ctx, 'mann'), cfg.classes, cfg);
    return new SequenceLearner('mann', cfg, model, ctx) as unknown as MetaLearner<Partial<MannConfig>>;
  },
};

export const lstmMetaFactory: LearnerFactory<Partial<LstmMetaConfig>> = {
  id: 'lstm-meta',
  family: 'memory',
  description: 'Recurrent meta-learner: plain LSTM on (x_t, y_{t-1}) sequences (Santoro et al. 2016 baseline)',
  configSchema: lstmMetaConfigSchema as unknown as Record<string, unknown>,
  create(raw, ctx) {
    const cfg = resolveConfig<LstmMetaConfig>('lstm-meta', lstmMetaConfigSchema, raw);
    const model = new LstmModel(flatSize(ctx, 'lstm-meta'), cfg.classes, cfg);
    return new SequenceLearner('lstm-meta', cfg, model, ctx) as unknown as MetaLearner<Partial<LstmMetaConfig>>;
  },
};
