/**
 * Meta Networks (Munkhdalai & Yu 2017), for N-way k-shot classification.
 *
 * Slow weights: backbone f (core conv4 / mlp), embedding layer (Q: `emb.weight`, `emb.bias`), base
 * learner (W: `base.weight`, `base.bias`), and two meta-learners that turn loss gradients into fast
 * weights, applied per coordinate to preprocessed gradients (Andrychowicz et al.: (log|g|/p, sign g)):
 *  - d (`d.*`): task-level fast weights Q* = d(∇_Q L_emb) of the embedding, from the support loss
 *  - m (`m.*`): example-level fast weights W*_i = m(∇_W L_i) of the base learner, one per support example
 * Layer augmentation: r = relu(f·Q + b) + relu(f·Q*); the W*_i are stored in a memory keyed by the
 * support representations r_i; a query reads W*_q = Σ_i softmax_i(s·cos(r_q, r_i)) W*_i and outputs
 * logits = r_q·W + b + r_q·W*_q. All slow weights are trained end to end on the query loss; the loss
 * gradients fed to m and d are meta-information inputs (no gradient flows back through them).
 * Both gradients are written in closed form (softmax cross-entropy of a linear / relu layer).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  Rng,
  OnnxGraphBuilder,
  argmaxRows,
  uniformTensor,
  type Checkpoint,
  type Episode,
  type FewShotClassifier,
  type LabeledSet,
  type LearnerContext,
  type LearnerFactory,
  type MetaLearner,
  type OnnxModel,
  type Params,
  type Sequential,
  type StepResult,
  taskParallelStep,
  type FlatParams,
  type StepContext,
  type TaskGradient,
  type TaskParallelLearner,
} from '@metalearn/core';
import { oneHotF } from './addressing.js';
import { applyMeanGradients, episodeTaskGradient, lastTaskBuffers, replaceBuffers, setFlatVariables, variablesToFlat } from './parallel.js';
import { Adam } from '@metalearn/core';
import { checkpointParams, cloneAll, loadCheckpointParams, toVariables } from './variables.js';
import { resolveConfig } from './config.js';
import { applyPrefixed, backboneOnnx, backboneSchemaProps, inputShapeOnnx, makeBackbone, prefixParams, stopGradient, unprefix, type BackboneConfig } from './backbone.js';

export interface MetaNetConfig extends BackboneConfig {
  /** output classes (max ways) */
  classes: number;
  /** embedding width E */
  embedDim: number;
  /** hidden units of the per-coordinate fast-weight generators m and d */
  metaHidden: number;
  /** initial attention sharpness s on cosine similarities (learned, stored as log) */
  attentionScale: number;
  lr: number;
  gradClip: number;
}

export const metaNetConfigSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'Meta Networks (Munkhdalai & Yu 2017)',
  type: 'object',
  additionalProperties: false,
  properties: {
    classes: { type: 'integer', minimum: 2, default: 5, description: 'output classes (max ways per episode)' },
    ...backboneSchemaProps,
    embedDim: { type: 'integer', minimum: 1, default: 64, description: 'embedding width (layer with task-level fast weights)' },
    metaHidden: { type: 'integer', minimum: 1, default: 20, description: 'hidden units of the gradient -> fast-weight MLPs' },
    attentionScale: { type: 'number', exclusiveMinimum: 0, default: 10, description: 'initial sharpness of the cosine attention over stored fast weights' },
    lr: { type: 'number', exclusiveMinimum: 0, default: 1e-3, description: 'Adam learning rate' },
    gradClip: { type: 'number', minimum: 0, default: 10, description: 'global gradient-norm clip (0 = off)' },
  },
} as const;

const GRAD_P = 10;
const COS_EPS = 1e-8;

/** Gradient preprocessing (Andrychowicz et al. 2016): g -> [log|g|/p, sign g] or [-1, e^p g] for tiny g; [..., 2]. */
export function preprocessGrad(g: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const a = tf.abs(g);
    const big = tf.greaterEqual(a, Math.exp(-GRAD_P));
    const c1 = tf.where(big, tf.div(tf.log(tf.add(a, 1e-30)), GRAD_P), tf.fill(g.shape, -1));
    const c2 = tf.where(big, tf.sign(g), tf.mul(g, Math.exp(GRAD_P)));
    return tf.stack([c1, c2], g.rank); // positive axis: core engine Pack gradient ignores negative axes
  });
}

/** Per-coordinate MLP [..., 2] -> [...]: tanh hidden layer, linear output. */
function coordMlp(p: Params, prefix: string, x: tf.Tensor): tf.Tensor {
  const shape = x.shape.slice(0, -1);
  const flat = tf.reshape(x, [-1, 2]) as tf.Tensor2D;
  const h = tf.tanh(tf.add(tf.matMul(flat, p[`${prefix}.w1`] as tf.Tensor2D), p[`${prefix}.b1`]!));
  const o = tf.add(tf.matMul(h as tf.Tensor2D, p[`${prefix}.w2`] as tf.Tensor2D), p[`${prefix}.b2`]!);
  return tf.reshape(o, shape);
}

function cosine(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const an = tf.div(a, tf.sqrt(tf.add(tf.sum(tf.square(a), 1, true), COS_EPS)));
  const bn = tf.div(b, tf.sqrt(tf.add(tf.sum(tf.square(b), 1, true), COS_EPS)));
  return tf.matMul(an, bn, false, true) as tf.Tensor2D;
}

/** What adaptation to a support set produces (everything a query needs besides the slow weights). */
export interface MetaNetMemory {
  /** task-level fast weights Q* [F, E] */
  qFast: tf.Tensor2D;
  /** support representations r_i [n, E] (memory keys) */
  keys: tf.Tensor2D;
  /** example-level fast weights W*_i [n, E, C] (memory values) */
  values: tf.Tensor3D;
}

/** The meta-information: loss gradients fed to d (gQ [F, E]) and m (gW [n, E, C]). */
export interface MetaInfo {
  gQ: tf.Tensor2D;
  gW: tf.Tensor3D;
}

export class MetaNetModel {
  readonly backbone: Sequential;
  readonly F: number;
  constructor(readonly cfg: MetaNetConfig, readonly inputShape: number[]) {
    this.backbone = makeBackbone(cfg, inputShape, 'metanet');
    const out = this.backbone.outputShape;
    if (out.length !== 1) throw new Error(`metanet: backbone output must be a vector, got [${out}]`);
    this.F = out[0]!;
  }

  init(rng: Rng): Params {
    const { embedDim: E, classes: C, metaHidden: h } = this.cfg;
    const gen = (name: string, r: Rng): Params => ({
      [`${name}.w1`]: uniformTensor(r, [2, h], -1, 1),
      [`${name}.b1`]: uniformTensor(r, [h], -0.5, 0.5),
      [`${name}.w2`]: uniformTensor(r, [h, 1], -1 / Math.sqrt(h), 1 / Math.sqrt(h)),
      [`${name}.b2`]: tf.zeros([1]),
    });
    const bE = 1 / Math.sqrt(this.F);
    const bC = 1 / Math.sqrt(E);
    const r = rng.fork('heads');
    return {
      ...prefixParams('bb', this.backbone.init(rng.fork('backbone'))),
      'emb.weight': uniformTensor(r, [this.F, E], -bE, bE),
      'emb.bias': uniformTensor(r, [E], -bE, bE),
      'base.weight': uniformTensor(r, [E, C], -bC, bC),
      'base.bias': tf.zeros([C]),
      ...gen('m', rng.fork('m')),
      ...gen('d', rng.fork('d')),
      'att.logScale': tf.scalar(Math.log(this.cfg.attentionScale)),
    };
  }

  initState(): Params {
    return prefixParams('bb', this.backbone.initState());
  }

  features(p: Params, x: tf.Tensor, training: boolean, state: Params, updates?: Params): tf.Tensor2D {
    return applyPrefixed(this.backbone, 'bb', p, x, training, state, updates);
  }

  /** r = relu(f·Q + b) + relu(f·Q*) */
  represent(p: Params, f: tf.Tensor2D, qFast: tf.Tensor2D): tf.Tensor2D {
    const slow = tf.relu(tf.add(tf.matMul(f, p['emb.weight'] as tf.Tensor2D), p['emb.bias']!));
    return tf.add(slow, tf.relu(tf.matMul(f, qFast))) as tf.Tensor2D;
  }

  /** Fast weights and memory from support features fs [n, F] with labels. */
  adaptFeatures(p: Params, fs: tf.Tensor2D, ys: Int32Array, frozen?: MetaInfo): MetaNetMemory & { info: MetaInfo } {
    const C = this.cfg.classes;
    const n = fs.shape[0];
    const Y = oneHotF(ys, C);
    const W = p['base.weight'] as tf.Tensor2D;
    // task level: ∇_Q of CE(relu(f·Q + b)·W + c, y) averaged over the support set (meta-information)
    const gQ = frozen?.gQ ?? stopGradient(
      tf.tidy(() => {
        const pre = tf.add(tf.matMul(fs, p['emb.weight'] as tf.Tensor2D), p['emb.bias']!);
        const h = tf.relu(pre) as tf.Tensor2D;
        const P = tf.softmax(tf.add(tf.matMul(h, W), p['base.bias']!));
        const dh = tf.mul(tf.matMul(tf.sub(P, Y), W, false, true), tf.cast(tf.greater(pre, 0), 'float32'));
        return tf.div(tf.matMul(fs, dh as tf.Tensor2D, true, false), n) as tf.Tensor2D;
      }),
    );
    const qFast = coordMlp(p, 'd', preprocessGrad(gQ)) as tf.Tensor2D;
    const keys = this.represent(p, fs, qFast);
    // example level: ∇_W of CE(r_i·W + c, y_i) = r_i ⊗ (softmax_i - y_i), one per support example
    const gW = frozen?.gW ?? stopGradient(tf.tidy(() => tf.mul(tf.expandDims(keys, 2), tf.expandDims(tf.sub(tf.softmax(tf.add(tf.matMul(keys, W), p['base.bias']!)), Y), 1)) as tf.Tensor3D));
    const values = coordMlp(p, 'm', preprocessGrad(gW)) as tf.Tensor3D;
    return { qFast, keys, values, info: { gQ, gW } };
  }

  /** Query logits [q, C] from query features fq [q, F]. */
  queryLogits(p: Params, fq: tf.Tensor2D, mem: MetaNetMemory): tf.Tensor2D {
    const { embedDim: E, classes: C } = this.cfg;
    const r = this.represent(p, fq, mem.qFast);
    const a = tf.softmax(tf.mul(cosine(r, mem.keys), tf.exp(p['att.logScale']!))) as tf.Tensor2D; // [q, n]
    const n = mem.keys.shape[0];
    const wq = tf.reshape(tf.matMul(a, tf.reshape(mem.values, [n, E * C]) as tf.Tensor2D), [-1, E, C]) as tf.Tensor3D;
    const fast = tf.reshape(tf.matMul(tf.expandDims(r, 1) as tf.Tensor3D, wq), [-1, C]);
    const slow = tf.add(tf.matMul(r, p['base.weight'] as tf.Tensor2D), p['base.bias']!);
    return tf.add(slow, fast) as tf.Tensor2D;
  }
}

function lossOf(logits: tf.Tensor2D, y: Int32Array): tf.Scalar {
  const C = logits.shape[1];
  const oh = oneHotF(y, C);
  return tf.neg(tf.mean(tf.sum(tf.mul(oh, tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

export class MetaNetLearner implements MetaLearner<MetaNetConfig>, TaskParallelLearner {
  readonly id = 'metanet';
  readonly family = 'memory' as const;
  readonly model: MetaNetModel;
  readonly params: Record<string, tf.Variable>;
  state_: Params;
  private adam: Adam;
  private rng: Rng;
  private steps = 0;
  private disposed = false;

  constructor(readonly config: MetaNetConfig, readonly ctx: LearnerContext) {
    this.model = new MetaNetModel(config, ctx.inputShape);
    this.rng = new Rng(ctx.seed);
    const init = this.model.init(this.rng.fork('init'));
    this.params = toVariables(init, 'metanet');
    this.state_ = this.model.initState();
    this.adam = new Adam({ lr: config.lr, clipNorm: config.gradClip });
  }

  private check(ways: number): void {
    if (this.disposed) throw new Error('metanet: learner was disposed');
    if (ways > this.config.classes) throw new Error(`metanet: ${ways} ways but config 'classes' is ${this.config.classes}`);
  }

  /** Query loss and logits of one episode (training mode collects batch-norm updates). */
  episodeLoss(ep: Episode, training: boolean, updates?: Params, frozen?: MetaInfo): { loss: tf.Scalar; logits: tf.Tensor2D; info: MetaInfo } {
    const p = this.params as Params;
    const nS = ep.support.y.length;
    const all = tf.concat([ep.support.x, ep.query.x], 0);
    const f = this.model.features(p, all, training, this.state_, updates);
    const fs = tf.slice(f, [0, 0], [nS, -1]) as tf.Tensor2D;
    const fq = tf.slice(f, [nS, 0], [-1, -1]) as tf.Tensor2D;
    const mem = this.model.adaptFeatures(p, fs, ep.support.y, frozen);
    const logits = this.model.queryLogits(p, fq, mem);
    return { loss: lossOf(logits, ep.query.y), logits, info: mem.info };
  }

  /** One meta-update: core's `taskParallelStep` with no pool (the same maths a worker pool runs). */
  metaTrainStep(batch: Episode[]): StepResult {
    return taskParallelStep(this, batch);
  }

  /** Validates the batch; the context carries the batch size (no randomness in a MetaNet step). */
  beginStep(batch: Episode[]): StepContext {
    if (batch.length === 0) throw new Error('metanet.metaTrainStep: empty meta-batch');
    for (const e of batch) this.check(e.ways);
    return { n: batch.length };
  }

  /**
   * Per episode: the query loss (batch-norm in training mode on that episode's support + query
   * batch), its gradient w.r.t. every slow weight, and its correct query predictions. The last task
   * of the step also returns its batch-norm running statistics (one EMA step from the step's): as in
   * a single-thread step, the last episode's update wins.
   */
  taskGradients(episodes: Episode[], first: number, ctx: StepContext): TaskGradient[] {
    return episodes.map((ep, i) => {
      const index = first + i;
      this.check(ep.ways);
      return episodeTaskGradient(this.id, this.params, ctx, index, ep.query.y, (updates) => this.episodeLoss(ep, true, updates));
    });
  }

  /** Adam on the mean episode gradient (tasks summed in task order); the last task's running statistics. */
  applyGradients(tasks: TaskGradient[], _ctx: StepContext): StepResult {
    const s = applyMeanGradients(this.id, this.params, this.adam, tasks);
    replaceBuffers(this.id, this.state_, lastTaskBuffers(tasks));
    this.steps++;
    return { loss: s.loss / s.n, accuracy: s.total ? s.correct / s.total : NaN, metrics: { gradNorm: s.gradNorm, attentionScale: Math.exp(this.params['att.logScale']!.dataSync()[0]!) } };
  }

  /** Slow weights and batch-norm running statistics (keys `param:<k>` / `buffer:<k>`) as flat arrays. */
  getParams(): FlatParams {
    return variablesToFlat(this.params, this.state_);
  }

  /** Replace slow weights and running statistics with a copy from {@link getParams}. */
  setParams(p: FlatParams): void {
    setFlatVariables(this.id, p, this.params, this.state_);
  }

  adapt(support: LabeledSet, ways: number): FewShotClassifier {
    this.check(ways);
    for (const y of support.y) if (y < 0 || y >= ways) throw new Error(`metanet.adapt: support label ${y} outside 0..${ways - 1}`);
    const p = this.params as Params;
    const mem = tf.tidy(() => {
      const m = this.model.adaptFeatures(p, this.model.features(p, support.x, false, this.state_), support.y);
      return { qFast: m.qFast, keys: m.keys, values: m.values };
    });
    const snap = cloneAll(this.params);
    const state = cloneAll(this.state_);
    const model = this.model;
    return {
      predict: (x) => tf.tidy(() => tf.slice(model.queryLogits(snap, model.features(snap, x, false, state), mem), [0, 0], [-1, ways])),
      toOnnx: () => exportMetaNet(model, snap, state, mem, ways),
      dispose: () => tf.dispose([mem.qFast, mem.keys, mem.values, ...Object.values(snap), ...Object.values(state)]),
    };
  }

  state(): Checkpoint {
    const params = checkpointParams(this.params, this.state_);
    return {
      format: 'metalearn-checkpoint',
      version: 1,
      learner: this.id,
      config: { ...this.config },
      params,
      optimizer: this.adam.state(),
      rng: this.rng.state(),
      progress: { steps: this.steps },
      meta: { inputShape: this.ctx.inputShape, seed: this.ctx.seed },
    };
  }

  load(c: Checkpoint): void {
    loadCheckpointParams(this.id, c, this.params, this.state_);
    if (c.optimizer) this.adam.load(c.optimizer);
    if (c.rng) this.rng = Rng.fromState(c.rng);
    this.steps = c.progress?.steps ?? 0;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose([...Object.values(this.params), ...Object.values(this.state_)]);
    this.adam.dispose();
  }
}

/** The base learner with its fast weights baked in: backbone -> r (with Q*) -> attention over W*_i -> logits [batch, ways]. */
export function exportMetaNet(model: MetaNetModel, p: Params, state: Params, mem: MetaNetMemory, ways: number): OnnxModel {
  const { embedDim: E, classes: C } = model.cfg;
  const g = new OnnxGraphBuilder({ name: 'metanet-adapted' });
  const x = g.addInput('x', inputShapeOnnx(model.backbone));
  const f = backboneOnnx(g, model.backbone, unprefix('bb', p), unprefix('bb', state), x);
  const slowR = g.addNode('Relu', [g.addNode('Gemm', [f, g.addInitializer('emb.weight', p['emb.weight']!), g.addInitializer('emb.bias', p['emb.bias']!)])]);
  const fastR = g.addNode('Relu', [g.addNode('MatMul', [f, g.addInitializer('fast.emb', mem.qFast)])]);
  const r = g.addNode('Add', [slowR, fastR]);
  const eps = g.float(COS_EPS, [], 'cos_eps');
  const norm = (v: string) => g.addNode('Div', [v, g.addNode('Sqrt', [g.addNode('Add', [g.addNode('ReduceSum', [g.addNode('Mul', [v, v]), g.int64([1])], { keepdims: 1 }), eps])])]);
  const keysN = tf.tidy(() => tf.transpose(tf.div(mem.keys, tf.sqrt(tf.add(tf.sum(tf.square(mem.keys), 1, true), COS_EPS)))));
  const sim = g.addNode('MatMul', [norm(r), g.addInitializer('memory.keys_t', keysN)]);
  keysN.dispose();
  const scale = Math.exp(p['att.logScale']!.dataSync()[0]!);
  const a = g.addNode('Softmax', [g.addNode('Mul', [sim, g.float(scale, [], 'att_scale')])], { axis: -1 });
  const n = mem.keys.shape[0];
  const vals = tf.reshape(mem.values, [n, E * C]);
  const wq = g.addNode('Reshape', [g.addNode('MatMul', [a, g.addInitializer('memory.values', vals)]), g.int64([-1, E, C])]);
  vals.dispose();
  const fast = g.addNode('Reshape', [g.addNode('MatMul', [g.addNode('Unsqueeze', [r, g.int64([1])]), wq]), g.int64([-1, C])]);
  const slow = g.addNode('Gemm', [r, g.addInitializer('base.weight', p['base.weight']!), g.addInitializer('base.bias', p['base.bias']!)]);
  const logits = g.addNode('Slice', [g.addNode('Add', [slow, fast]), g.int64([0]), g.int64([ways]), g.int64([1])], {}, { output: 'logits' });
  g.addOutput(logits, ['batch', ways]);
  return g.build({ producerName: 'metalearn/memory', docString: 'Meta Networks base learner with fast weights baked in' });
}

export const metaNetFactory: LearnerFactory<Partial<MetaNetConfig>> = {
  id: 'metanet',
  family: 'memory',
  description: 'Meta Networks (Munkhdalai & Yu 2017): loss gradients -> example- and task-level fast weights, layer-augmented base learner',
  configSchema: metaNetConfigSchema as unknown as Record<string, unknown>,
  create(raw, ctx) {
    const cfg = resolveConfig<MetaNetConfig>('metanet', metaNetConfigSchema, raw);
    return new MetaNetLearner(cfg, ctx) as unknown as MetaLearner<Partial<MetaNetConfig>>;
  },
};
