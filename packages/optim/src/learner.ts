import * as tf from '@tensorflow/tfjs-core';
import {
  accuracy,
  argmaxRows,
  compileMamlTask,
  oneHotRows,
  graphThreads,
  type OrtGraph,
  Dense,
  Rng,
  conv4,
  dataToTensors,
  flatData,
  fromFlat,
  mlp,
  registerLearner,
  sumTaskGradients,
  taskParallelStep,
  toFlat,
  tensorsToData,
  type Checkpoint,
  type Episode,
  type FewShotClassifier,
  type LabeledSet,
  type LearnerContext,
  type LearnerFactory,
  type MetaLearner,
  type Sequential,
  type StepResult,
  type FlatParams,
  type StepContext,
  type TaskGradient,
  type TaskParallelLearner,
} from '@metalearn/core';
import { sequentialClassifier } from '@metalearn/core';
import { Adam } from '@metalearn/core';
import { getInnerOptimizer } from './inner.js';
import { imamlTaskGrad } from './imaml.js';
import { accuracyOf, crossEntropy } from './losses.js';
import { fomamlTaskGrad, innerLoop, LR_PREFIX, mamlTaskGrad, splitMeta, type InnerLoopSpec, type TaskGradResult } from './maml.js';
import { disposeParams, keysOf } from './params.js';
import { reptileTaskDelta } from './reptile.js';
import type { Params, Task } from './types.js';

export type OptimAlgorithm = 'maml' | 'fomaml' | 'anil' | 'metasgd' | 'imaml' | 'reptile';

export interface BackboneConfig {
  /** 'conv4' (images [h, w, c]) or 'mlp' (any input, flattened) */
  type: 'conv4' | 'mlp';
  /** conv4: filters per block */
  filters?: number;
  /** mlp: hidden widths */
  hidden?: number[];
}

export interface OptimConfig {
  backbone: BackboneConfig;
  /** classes per episode (head width) */
  ways: number;
  /** inner steps during meta-training */
  innerSteps: number;
  /** inner steps when adapting at test time (default: innerSteps) */
  evalInnerSteps?: number;
  /** inner learning rate α (initial value of the learned rates for Meta-SGD / per-step rates) */
  innerLr: number;
  /** inner optimiser id ('sgd', 'adam', or any registered one) */
  innerOptimizer: string;
  /** outer Adam learning rate (Reptile: outer step size ε) */
  metaLr: number;
  /** MAML/ANIL: drop second-order terms */
  firstOrder?: boolean;
  /** MAML: learn one inner learning rate per step and parameter tensor */
  perStepLr?: boolean;
  /** iMAML: proximal strength λ */
  lambda?: number;
  /** iMAML: conjugate-gradient iterations */
  cgSteps?: number;
  /** iMAML: CG damping δ, (I + H/(λ + δ)) (default 0) */
  cgDamping?: number;
  /** iMAML: curvature in CG, 'hessian' (default) or 'gauss-newton' (positive semi-definite) */
  cgMatrix?: 'hessian' | 'gauss-newton';
  /** iMAML: J v in Gauss-Newton products, 'exact' (double backward, default) or 'finite-difference' */
  cgJvp?: 'exact' | 'finite-difference';
  /** iMAML: relative step of the finite-difference J v (default 1e-4) */
  fdStep?: number;
  /**
   * iMAML: proximal strength used when adapting at test time (default: `lambda`, the training inner
   * problem; 0: plain SGD on the support loss, as the reference code's measure_accuracy.py with lam 0)
   */
  evalLambda?: number;
  /** Reptile: also train the inner loop on the query set of training episodes */
  reptileUseQuery?: boolean;
  /** Reptile: anneal ε linearly to 0 over this many outer steps (0: constant) */
  annealSteps?: number;
  /** outer gradient-norm clipping (0: none) */
  clipNorm?: number;
  /**
   * Zero the linear head at initialisation and keep it there (its meta-gradient is dropped): every
   * task's adaptation starts from a symmetric head, as the "zeroing trick" of Kao et al. (ICLR 2022)
   */
  zeroHead?: boolean;
  /**
   * Training engine: 'tfjs' (gradient tapes on the wasm backend) or 'onnxruntime' (each task's inner
   * loop, query loss and meta-gradient as one onnxruntime graph; MAML, FOMAML, ANIL and Meta-SGD with
   * SGD inner steps)
   */
  engine?: 'tfjs' | 'onnxruntime';
}

const common = {
  backbone: {
    type: 'object',
    properties: {
      type: { type: 'string', enum: ['conv4', 'mlp'], default: 'conv4' },
      filters: { type: 'integer', minimum: 1, default: 64 },
      hidden: { type: 'array', items: { type: 'integer', minimum: 1 }, default: [40, 40] },
    },
    required: ['type'],
    additionalProperties: false,
    default: { type: 'conv4', filters: 64 },
  },
  ways: { type: 'integer', minimum: 2, default: 5, description: 'classes per episode (head width)' },
  evalInnerSteps: { type: 'integer', minimum: 0, description: 'inner steps at test time (default: innerSteps)' },
  innerOptimizer: { type: 'string', default: 'sgd', description: "inner optimiser: 'sgd' or 'adam'" },
  clipNorm: { type: 'number', minimum: 0, default: 0 },
  zeroHead: { type: 'boolean', default: false, description: 'zero the linear head at initialisation and do not meta-learn it (every task starts from a symmetric head; Kao et al. 2022)' },
  engine: {
    type: 'string',
    enum: ['tfjs', 'onnxruntime'],
    default: 'tfjs',
    description:
      "training engine: 'tfjs' (gradient tapes on the wasm backend) or 'onnxruntime' (each task's inner loop, query loss and meta-gradient — second order included — as one onnxruntime graph built from the same layers, on all cores; maml, fomaml, anil and metasgd with innerOptimizer sgd)",
  },
};

function schema(extra: Record<string, unknown>, defaults: { innerSteps: number; innerLr: number; metaLr: number; innerOptimizer?: string }): Record<string, unknown> {
  return {
    type: 'object',
    properties: {
      ...common,
      innerSteps: { type: 'integer', minimum: 0, default: defaults.innerSteps },
      innerLr: { type: 'number', exclusiveMinimum: 0, default: defaults.innerLr },
      metaLr: { type: 'number', exclusiveMinimum: 0, default: defaults.metaLr },
      ...(defaults.innerOptimizer ? { innerOptimizer: { ...common.innerOptimizer, default: defaults.innerOptimizer } } : {}),
      ...extra,
    },
    additionalProperties: false,
  };
}

/** iMAML: finite-difference J v exists for Gauss-Newton products only (checked by ajv in `validate`, too). */
function withFdRule(s: Record<string, unknown>): Record<string, unknown> {
  return {
    ...s,
    if: { properties: { cgJvp: { const: 'finite-difference' } }, required: ['cgJvp'] },
    then: { properties: { cgMatrix: { const: 'gauss-newton' } }, required: ['cgMatrix'] },
  };
}

/** JSON Schemas (ajv, with defaults) of each learner's options. */
export const optimSchemas: Record<OptimAlgorithm, Record<string, unknown>> = {
  maml: schema(
    {
      firstOrder: { type: 'boolean', default: false },
      perStepLr: { type: 'boolean', default: false, description: 'learn per-step, per-tensor inner rates (MAML++)' },
    },
    { innerSteps: 1, innerLr: 0.4, metaLr: 0.001 },
  ),
  fomaml: schema({}, { innerSteps: 1, innerLr: 0.4, metaLr: 0.001 }),
  anil: schema({ firstOrder: { type: 'boolean', default: false } }, { innerSteps: 1, innerLr: 0.4, metaLr: 0.001 }),
  metasgd: schema({}, { innerSteps: 1, innerLr: 0.4, metaLr: 0.001 }),
  imaml: withFdRule(schema(
    {
      lambda: { type: 'number', exclusiveMinimum: 0, default: 2 },
      cgSteps: { type: 'integer', minimum: 1, default: 5 },
      cgDamping: { type: 'number', minimum: 0, default: 0, description: 'CG solves (I + H/(lambda + cgDamping)); 0 = exact implicit gradient, the reference code uses 10' },
      cgMatrix: { type: 'string', enum: ['hessian', 'gauss-newton'], default: 'hessian', description: "curvature in CG: 'hessian' (exact implicit gradient) or 'gauss-newton' (positive semi-definite Jᵀ H_z J: CG stays well posed where the Hessian has negative curvature)" },
      cgJvp: { type: 'string', enum: ['exact', 'finite-difference'], default: 'exact', description: "J v in the Gauss-Newton products: 'exact' (double backward) or 'finite-difference' (central differences of two forward passes, ~1.7x faster per product; needs cgMatrix gauss-newton)" },
      fdStep: { type: 'number', exclusiveMinimum: 0, default: 0.0001, description: "relative step h·||v|| / ||phi|| of cgJvp 'finite-difference'" },
      evalLambda: { type: 'number', minimum: 0, description: 'proximal strength when adapting at test time (default: lambda; 0 = plain SGD on the support loss, as the reference code evaluates)' },
    },
    { innerSteps: 10, innerLr: 0.1, metaLr: 0.001 },
  )),
  reptile: schema(
    {
      reptileUseQuery: { type: 'boolean', default: false },
      annealSteps: { type: 'integer', minimum: 0, default: 0 },
    },
    { innerSteps: 5, innerLr: 0.001, metaLr: 1, innerOptimizer: 'adam' },
  ),
};

/** Apply the schema defaults of `algo` to a (possibly partial) config, checking field names and types. */
export function resolveOptimConfig(algo: OptimAlgorithm, cfg: Partial<OptimConfig> | undefined): OptimConfig {
  const sch = optimSchemas[algo] as { properties: Record<string, { default?: unknown; type?: string; enum?: unknown[] }> };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg ?? {})) {
    if (!(k in sch.properties)) throw new Error(`${algo} config: unknown field '${k}' (allowed: ${Object.keys(sch.properties).join(', ')})`);
    const t = sch.properties[k]!.type;
    const ok = t === 'integer' ? Number.isInteger(v) : t === 'array' ? Array.isArray(v) : t === undefined || typeof v === t;
    if (!ok) throw new Error(`${algo} config: field '${k}' must be of type ${t}, got ${JSON.stringify(v)}`);
    const allowed = sch.properties[k]!.enum;
    if (allowed && !allowed.includes(v)) throw new Error(`${algo} config: field '${k}' must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  for (const [k, p] of Object.entries(sch.properties)) if (out[k] === undefined && p.default !== undefined) out[k] = structuredClone(p.default);
  const c = out as unknown as OptimConfig;
  c.backbone = { ...(sch.properties.backbone!.default as BackboneConfig), ...c.backbone };
  if (!['conv4', 'mlp'].includes(c.backbone.type)) throw new Error(`${algo} config: backbone.type must be 'conv4' or 'mlp', got '${c.backbone.type}'`);
  if (algo === 'fomaml') c.firstOrder = true;
  if (algo === 'imaml' && c.cgJvp === 'finite-difference' && c.cgMatrix !== 'gauss-newton')
    throw new Error(`imaml config: field 'cgJvp' 'finite-difference' needs cgMatrix 'gauss-newton', got cgMatrix '${c.cgMatrix}'`);
  getInnerOptimizer(c.innerOptimizer); // throws a clear error for unknown ids
  if (c.engine === 'onnxruntime') {
    if (algo === 'imaml' || algo === 'reptile') throw new Error(`${algo} config: field 'engine' 'onnxruntime' supports maml, fomaml, anil and metasgd; use engine 'tfjs' for ${algo}`);
    if (c.innerOptimizer !== 'sgd') throw new Error(`${algo} config: field 'engine' 'onnxruntime' needs innerOptimizer 'sgd', got '${c.innerOptimizer}'`);
  }
  return c;
}

/** The network: backbone (batch-norm always in batch-statistics mode, as in MAML) + linear head `head`. */
export function buildOptimNet(cfg: OptimConfig, inputShape: number[]): { model: Sequential; headKeys: string[] } {
  let model: Sequential;
  if (cfg.backbone.type === 'conv4') {
    if (inputShape.length !== 3) throw new Error(`backbone conv4 needs image inputs [h, w, c], got inputShape ${JSON.stringify(inputShape)}`);
    model = conv4({ inputShape, filters: cfg.backbone.filters ?? 64, trackRunningStats: false }).extend(new Dense({ name: 'head', units: cfg.ways }));
  } else {
    model = mlp({ inputShape, hidden: cfg.backbone.hidden ?? [40, 40] }).extend(new Dense({ name: 'head', units: cfg.ways }));
  }
  return { model, headKeys: model.paramNames().filter((k) => k.startsWith('head.')) };
}

const TRAIN_CTX = { training: true } as const;

function episodeTask(e: Episode): Task {
  return {
    xs: e.support.x,
    ys: tf.tensor1d(e.support.y, 'int32'),
    xq: e.query.x,
    yq: tf.tensor1d(e.query.y, 'int32'),
  };
}

/**
 * One optimisation-based meta-learner (MAML, FOMAML, ANIL, Meta-SGD, iMAML or Reptile) over a
 * functional core `Sequential` network with a linear head. Parameters are plain tensors; the outer
 * update is Adam (Reptile: interpolation θ ← θ + ε·mean(φ − θ)).
 */
export class OptimLearner implements MetaLearner<OptimConfig>, TaskParallelLearner {
  readonly family = 'optim' as const;
  readonly model: Sequential;
  readonly headKeys: string[];
  /** network parameters + learned learning rates (`lr:` keys) */
  meta: Params;
  private adam: Adam;
  private steps = 0;
  private episodes = 0;

  constructor(
    readonly id: OptimAlgorithm,
    readonly config: OptimConfig,
    readonly ctx: LearnerContext,
  ) {
    const { model, headKeys } = buildOptimNet(config, ctx.inputShape);
    this.model = model;
    this.headKeys = headKeys;
    this.meta = model.init(new Rng(ctx.seed).fork('optim-init'));
    if (config.zeroHead)
      for (const k of headKeys) {
        const z = tf.zerosLike(this.meta[k]!);
        this.meta[k]!.dispose();
        this.meta[k] = z;
      }
    const netKeys = keysOf(this.meta);
    if (id === 'metasgd') for (const k of netKeys) this.meta[`${LR_PREFIX}${k}`] = tf.fill(this.meta[k]!.shape, config.innerLr);
    if (id === 'maml' && config.perStepLr) {
      if (config.firstOrder) throw new Error('maml config: perStepLr needs second-order gradients (firstOrder: false)');
      for (let s = 0; s < config.innerSteps; s++) for (const k of netKeys) this.meta[`${LR_PREFIX}${s}:${k}`] = tf.scalar(config.innerLr);
    }
    this.adam = new Adam({ lr: config.metaLr, clipNorm: config.clipNorm });
  }

  spec(steps: number): InnerLoopSpec {
    return {
      net: this.model,
      loss: crossEntropy,
      steps,
      lr: this.config.innerLr,
      optimizer: getInnerOptimizer(this.config.innerOptimizer),
      adaptKeys: this.id === 'anil' ? this.headKeys : undefined,
      ctx: TRAIN_CTX,
    };
  }

  /** One outer update: {@link taskParallelStep} with no pool (the same maths a worker pool runs). */
  metaTrainStep(batch: Episode[]): StepResult {
    return taskParallelStep(this, batch);
  }

  beginStep(batch: Episode[]): StepContext {
    if (!batch.length) throw new Error(`${this.id}.metaTrainStep: empty meta-batch`);
    for (const e of batch) if (e.ways !== this.config.ways) throw new Error(`${this.id}: episode has ${e.ways} ways but the learner's head has ${this.config.ways} (config field 'ways')`);
    return {};
  }

  /**
   * Per-task meta-gradients at the current meta-parameters: second-order MAML / Meta-SGD / ANIL,
   * first-order MAML, iMAML's implicit gradient, or Reptile's update direction φ − θ. No randomness.
   */
  taskGradients(episodes: Episode[], first: number, _ctx: StepContext): TaskGradient[] {
    if (this.config.engine === 'onnxruntime') return episodes.map((e, i) => this.graphTaskGradient(e, first + i));
    const spec = this.spec(this.config.innerSteps);
    return episodes.map((e, i) => {
      if (e.ways !== this.config.ways) throw new Error(`${this.id}: episode has ${e.ways} ways but the learner's head has ${this.config.ways} (config field 'ways')`);
      const task = episodeTask(e);
      try {
        let r: TaskGradResult;
        const metrics: Record<string, number> = {};
        if (this.id === 'reptile') {
          const d = reptileTaskDelta(spec, this.meta, task, this.config.reptileUseQuery ?? false);
          r = { loss: d.loss, queryOut: d.queryOut, grads: d.delta };
        } else if (this.id === 'imaml') {
          const ir = imamlTaskGrad(spec, this.meta, task, { lambda: this.config.lambda ?? 2, cgSteps: this.config.cgSteps ?? 5, cgDamping: this.config.cgDamping ?? 0, cgMatrix: this.config.cgMatrix ?? 'hessian', cgJvp: this.config.cgJvp ?? 'exact', fdStep: this.config.fdStep });
          metrics.cgResidual = ir.cgResidual;
          r = ir;
        } else if (this.config.firstOrder || this.id === 'fomaml') {
          r = fomamlTaskGrad(spec, this.meta, task);
        } else {
          r = mamlTaskGrad(spec, this.meta, task);
        }
        const total = e.query.y.length;
        const correct = Math.round(accuracyOf(r.queryOut, e.query.y) * total);
        r.queryOut.dispose();
        const grads: Record<string, Float32Array> = {};
        for (const k of keysOf(r.grads)) grads[k] = flatData(r.grads[k]!);
        disposeParams(r.grads);
        return { index: first + i, loss: r.loss, correct, total, grads, metrics };
      } finally {
        task.ys.dispose();
        task.yq.dispose();
      }
    });
  }

  private graphs = new Map<string, OrtGraph>();
  private metaData: { meta: Params; data: Record<string, Float32Array> } | null = null;

  /** One task's meta-gradient as one onnxruntime graph (engine 'onnxruntime'), cached per geometry. */
  private graphTaskGradient(e: Episode, index: number): TaskGradient {
    if (e.ways !== this.config.ways) throw new Error(`${this.id}: episode has ${e.ways} ways but the learner's head has ${this.config.ways} (config field 'ways')`);
    const ns = e.support.y.length;
    const nq = e.query.y.length;
    const key = `${ns}/${nq}`;
    const { net, lrs } = splitMeta(this.meta);
    let graph = this.graphs.get(key);
    if (!graph) {
      const shape = (p: Params) => Object.fromEntries(Object.keys(p).sort().map((k) => [k, [...p[k]!.shape]]));
      const spec = {
        model: this.model,
        shapes: shape(net),
        lrShapes: shape(lrs),
        support: ns,
        query: nq,
        ways: this.config.ways,
        innerSteps: this.config.innerSteps,
        innerLr: this.config.innerLr,
        firstOrder: !!(this.config.firstOrder || this.id === 'fomaml'),
        adaptKeys: this.id === 'anil' ? this.headKeys : undefined,
      };
      try {
        graph = compileMamlTask(spec, { threads: graphThreads() });
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        throw new Error(`${this.id}: engine 'onnxruntime' cannot build the training graph (${msg}); use engine 'tfjs'`, { cause: e });
      }
      this.graphs.set(key, graph);
    }
    const ways = this.config.ways;
    const feeds: Record<string, Float32Array> = {
      xs: e.support.x.dataSync() as Float32Array,
      ys: oneHotRows(e.support.y, ways, `${this.id}: support label`),
      xq: e.query.x.dataSync() as Float32Array,
      yq: oneHotRows(e.query.y, ways, `${this.id}: query label`),
    };
    // the meta-parameters' values, read once per meta-step (the tasks of a step share them; every
    // update replaces this.meta)
    if (this.metaData?.meta !== this.meta) this.metaData = { meta: this.meta, data: Object.fromEntries(Object.entries(this.meta).map(([k, t]) => [k, t.dataSync() as Float32Array])) };
    Object.assign(feeds, this.metaData.data);
    const out = graph.run(feeds);
    const correct = nq ? Math.round(accuracy(argmaxRows(out['logits']!, nq, ways), e.query.y) * nq) : 0;
    const grads: Record<string, Float32Array> = {};
    for (const k of Object.keys(this.meta)) {
      const gk = out[`grad:${k}`];
      if (!gk) throw new Error(`${this.id}: the onnxruntime graph has no gradient for '${k}'`);
      grads[k] = gk.slice();
    }
    return { index, loss: out['loss']![0]!, correct, total: nq, grads, metrics: {} };
  }

  /** Mean of the tasks' gradients (summed in task order) → Adam step (Reptile: θ ← θ + ε·mean(φ − θ)). */
  applyGradients(tasks: TaskGradient[], _ctx: StepContext): StepResult {
    const s = sumTaskGradients(tasks);
    const n = s.n;
    let acc = 0;
    for (const t of [...tasks].sort((a, b) => a.index - b.index)) acc += (t.total ? t.correct / t.total : 0) / n;
    const loss = s.loss / n;
    const extra: Record<string, number> = {};
    for (const [k, v] of Object.entries(s.metrics)) extra[k] = v / n;
    const mean: Params = {};
    for (const k of Object.keys(s.grads).sort()) {
      const p = this.meta[k];
      if (!p) throw new Error(`${this.id}.applyGradients: gradient for unknown parameter '${k}'`);
      // zeroHead: the head gets no update (a zero gradient moves neither Adam nor Reptile)
      mean[k] = this.config.zeroHead && this.headKeys.includes(k) ? tf.zerosLike(p) : tf.tidy(() => tf.div(tf.tensor(s.grads[k]!, p.shape, 'float32'), n));
    }
    let next: Params;
    if (this.id === 'reptile') {
      const anneal = this.config.annealSteps ? Math.max(0, 1 - this.steps / this.config.annealSteps) : 1;
      const eps = this.config.metaLr * anneal;
      extra.epsilon = eps;
      next = {};
      for (const k of Object.keys(this.meta)) next[k] = tf.tidy(() => tf.add(this.meta[k]!, tf.mul(mean[k]!, eps)));
    } else {
      const gn = tf.tidy(() => tf.addN(Object.values(mean).map((g) => tf.sum(tf.square(g)))));
      extra.gradNorm = Math.sqrt(gn.dataSync()[0]!);
      gn.dispose();
      next = this.adam.step(this.meta, mean);
    }
    disposeParams(mean, this.meta);
    this.meta = next;
    this.steps++;
    this.episodes += n;
    if (!Number.isFinite(loss)) throw new Error(`${this.id}: meta-loss is ${loss} at outer step ${this.steps} (lower innerLr/metaLr or set clipNorm)`);
    return { loss, accuracy: acc, metrics: extra };
  }

  /** The meta-parameters (network + learned rates) as flat arrays. */
  getParams(): FlatParams {
    return toFlat(this.meta);
  }

  /** Replace the meta-parameters (same keys and shapes). */
  setParams(p: FlatParams): void {
    const want = keysOf(this.meta);
    const got = Object.keys(p).sort();
    const bad = want.filter((k) => !p[k] || p[k]!.shape.join('x') !== this.meta[k]!.shape.join('x'));
    if (bad.length || got.length !== want.length) throw new Error(`${this.id}.setParams: parameters do not match: expected [${want.join(', ')}], got [${got.join(', ')}]${bad.length ? `; missing or wrong shape: ${bad.join(', ')}` : ''}`);
    const next = fromFlat(p);
    disposeParams(this.meta);
    this.meta = next;
  }

  /** Learned rates for `steps` steps: per-step rates beyond the trained steps reuse the last one. */
  private evalLrs(steps: number): Params {
    const { lrs } = splitMeta(this.meta);
    if (this.id !== 'maml' || !this.config.perStepLr) return lrs;
    const out: Params = { ...lrs };
    const last = this.config.innerSteps - 1;
    for (let s = this.config.innerSteps; s < steps; s++) for (const k of keysOf(splitMeta(this.meta).net)) out[`${LR_PREFIX}${s}:${k}`] = lrs[`${LR_PREFIX}${last}:${k}`]!;
    return out;
  }

  /** Adapted fast weights for a support set (caller disposes the returned tensors that are not in `meta`). */
  adaptParams(support: LabeledSet, steps = this.config.evalInnerSteps ?? this.config.innerSteps): Params {
    const { net } = splitMeta(this.meta);
    const y = tf.tensor1d(support.y, 'int32');
    try {
      const spec = this.spec(steps);
      // iMAML adapts at test time on the proximal-regularised inner problem (λ = evalLambda, default
      // the training λ); evalLambda 0 adapts by plain SGD on the support loss
      if (this.id === 'imaml') {
        const lambda = this.config.evalLambda ?? this.config.lambda ?? 2;
        if (lambda > 0) spec.proximal = { lambda, anchor: net };
      }
      const fast = innerLoop(spec, net, support.x, y, false, this.evalLrs(steps));
      // own every tensor of the result (the non-adapted keys are the meta-parameters themselves)
      const out: Params = {};
      for (const k of Object.keys(fast)) out[k] = fast[k] === net[k] ? tf.clone(fast[k]!) : fast[k]!;
      return out;
    } finally {
      y.dispose();
    }
  }

  adapt(support: LabeledSet, ways: number): FewShotClassifier {
    if (ways !== this.config.ways) throw new Error(`${this.id}.adapt: ${ways} ways requested but the head has ${this.config.ways} (config field 'ways')`);
    if (support.y.length !== support.x.shape[0]) throw new Error(`${this.id}.adapt: support has ${support.x.shape[0]} inputs but ${support.y.length} labels`);
    const fast = this.adaptParams(support);
    // batch-norm uses the statistics of the batch being classified, as MAML evaluates
    return sequentialClassifier(this.model, fast, { learner: this.id, ways, batchStats: true });
  }

  state(): Checkpoint {
    return {
      format: 'metalearn-checkpoint',
      version: 1,
      learner: this.id,
      config: this.config,
      params: tensorsToData(this.meta),
      optimizer: this.adam.state(),
      progress: { steps: this.steps, episodes: this.episodes },
    };
  }

  load(c: Checkpoint): void {
    if (c.learner !== this.id) throw new Error(`checkpoint is for learner '${c.learner}', not '${this.id}'`);
    const incoming = dataToTensors(c.params);
    const want = keysOf(this.meta);
    const got = keysOf(incoming);
    const missing = want.filter((k) => !incoming[k]);
    const extra = got.filter((k) => !this.meta[k]);
    const bad = want.filter((k) => incoming[k] && incoming[k]!.shape.join('x') !== this.meta[k]!.shape.join('x'));
    if (missing.length || extra.length || bad.length) {
      disposeParams(incoming);
      throw new Error(`checkpoint params do not match ${this.id}: missing [${missing.join(', ')}], unexpected [${extra.join(', ')}], wrong shape [${bad.join(', ')}]`);
    }
    disposeParams(this.meta);
    this.meta = incoming;
    if (c.optimizer) this.adam.load(c.optimizer);
    this.steps = c.progress?.steps ?? 0;
    this.episodes = c.progress?.episodes ?? 0;
  }

  dispose(): void {
    for (const g of this.graphs.values()) g.release();
    this.graphs.clear();
    this.metaData = null;
    disposeParams(this.meta);
    this.meta = {};
    this.adam.dispose();
  }
}

const descriptions: Record<OptimAlgorithm, string> = {
  maml: 'MAML (Finn et al. 2017): inner SGD steps with the graph kept, second-order meta-gradient; firstOrder / perStepLr options',
  fomaml: 'First-order MAML: meta-gradient = query gradient at the adapted weights',
  anil: 'ANIL (Raghu et al. 2020): only the linear head adapts in the inner loop',
  metasgd: 'Meta-SGD (Li et al. 2017): learned per-parameter inner learning rates',
  imaml: 'iMAML (Rajeswaran et al. 2019): proximal inner problem, implicit meta-gradient by conjugate gradient with Hessian-vector products',
  reptile: 'Reptile (Nichol et al. 2018): first-order, moves θ toward the adapted weights',
};

/** The LearnerFactory of one algorithm. */
export function optimFactory(algo: OptimAlgorithm): LearnerFactory<Partial<OptimConfig>> {
  return {
    id: algo,
    family: 'optim',
    description: descriptions[algo],
    configSchema: optimSchemas[algo],
    create: (config, ctx) => new OptimLearner(algo, resolveOptimConfig(algo, config), ctx),
  };
}

export const OPTIM_ALGORITHMS: readonly OptimAlgorithm[] = ['maml', 'fomaml', 'anil', 'metasgd', 'imaml', 'reptile'];

/** Register all six learners in core's registry (done on import of @metalearn/optim). */
export function registerOptimLearners(): void {
  for (const a of OPTIM_ALGORITHMS) registerLearner(optimFactory(a));
}
