/**
 * Image-Deformation Meta-Network (Chen et al. 2019), one-shot classification.
 *
 * A deformation sub-network looks at a probe image (a support example) and a gallery image (an
 * unlabelled image of other, base classes) and outputs patch-wise weights w ∈ [0,1]^{p×p}; the
 * synthesised image w⊙probe + (1−w)⊙gallery (weights upsampled to pixels, patch by patch) keeps the
 * probe's label. A prototype classifier (embedding = core conv4 / mlp, prototypes = class means of
 * the real and synthesised support embeddings, logits = −squared distance) sits on top; both are
 * trained end to end on the query loss. `deform: false` gives the no-deformation baseline (a plain
 * prototypical network with the same embedding), and `adapt(..., { deform: false })` evaluates a
 * deformation-trained model without its branch on the same episodes.
 *
 * The gallery is a fixed-size buffer of training images (base classes), filled from the first
 * meta-training episodes with the learner's seeded RNG and saved in checkpoints; before any
 * training the other support images serve as gallery.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  Rng,
  Dense,
  OnnxGraphBuilder,
  argmaxRows,
  conv4,
  tensorToData,
  dataToTensor,
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
  flatData,
  taskParallelStep,
  type FlatParams,
  type StepContext,
  type TaskGradient,
  type TaskParallelLearner,
} from '@metalearn/core';
import { oneHotF } from './addressing.js';
import { applyMeanGradients, episodeTaskGradient, lastTaskBuffers, replaceBuffers, setFlatVariables, stepContext, taskRng, variablesToFlat } from './parallel.js';
import { Adam } from '@metalearn/core';
import { checkpointParams, cloneAll, loadCheckpointParams, toVariables } from './variables.js';
import { resolveConfig } from './config.js';
import { applyPrefixed, backboneOnnx, backboneSchemaProps, inputShapeOnnx, makeBackbone, prefixParams, unprefix, type BackboneConfig } from './backbone.js';

export interface IdemeConfig extends BackboneConfig {
  classes: number;
  /** use the deformation branch (false = prototype-classifier baseline) */
  deform: boolean;
  /** patch grid p (weights are p×p; image height and width must be divisible by p) */
  patches: number;
  /** synthesised examples per support example */
  augPerExample: number;
  /** gallery buffer size (images of base classes) */
  gallerySize: number;
  /** filters of the deformation sub-network's two conv blocks */
  deformFilters: number;
  lr: number;
  gradClip: number;
}

export const idemeConfigSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'IDeMe-Net style image deformation meta-network (Chen et al. 2019)',
  type: 'object',
  additionalProperties: false,
  properties: {
    classes: { type: 'integer', minimum: 2, default: 5, description: 'output classes (max ways per episode)' },
    ...backboneSchemaProps,
    deform: { type: 'boolean', default: true, description: 'train with the deformation branch (false = no-deformation baseline)' },
    patches: { type: 'integer', minimum: 1, default: 4, description: 'patch grid p of the fusion weights (p×p)' },
    augPerExample: { type: 'integer', minimum: 1, default: 4, description: 'synthesised examples per support example' },
    gallerySize: { type: 'integer', minimum: 1, default: 256, description: 'gallery buffer of base-class images' },
    deformFilters: { type: 'integer', minimum: 1, default: 16, description: 'filters of the deformation sub-network' },
    lr: { type: 'number', exclusiveMinimum: 0, default: 1e-3, description: 'Adam learning rate' },
    gradClip: { type: 'number', minimum: 0, default: 10, description: 'global gradient-norm clip (0 = off)' },
  },
} as const;

export class IdemeModel {
  readonly embed: Sequential;
  readonly deformNet: Sequential | null;
  readonly head: Dense;
  readonly headIn: number;
  constructor(readonly cfg: IdemeConfig, readonly inputShape: number[]) {
    this.embed = makeBackbone(cfg, inputShape, 'ideme');
    if (this.embed.outputShape.length !== 1) throw new Error(`ideme: embedding output must be a vector, got [${this.embed.outputShape}]`);
    const p = cfg.patches;
    this.head = new Dense({ name: 'head', units: p * p });
    if (inputShape.length === 3) {
      const [h, w, c] = inputShape as [number, number, number];
      if (h % p !== 0 || w % p !== 0) throw new Error(`ideme: config 'patches' (${p}) must divide the image size ${h}x${w}`);
      this.deformNet = conv4({ inputShape: [h, w, 2 * c], filters: cfg.deformFilters, blocks: 2, trackRunningStats: false });
      this.headIn = this.deformNet.outputShape[0]!;
    } else {
      // vectors: fusion weights per block of features
      const D = inputShape.reduce((a, b) => a * b, 1);
      if (D % (p * p) !== 0) throw new Error(`ideme: patches² (${p * p}) must divide the input size ${D}`);
      this.deformNet = null;
      this.headIn = 2 * D;
    }
  }

  init(rng: Rng): Params {
    return {
      ...prefixParams('emb', this.embed.init(rng.fork('embed'))),
      ...(this.deformNet ? prefixParams('def', this.deformNet.init(rng.fork('deform'))) : {}),
      ...prefixParams('head', this.head.init(rng.fork('head'), [this.headIn])),
    };
  }

  initState(): Params {
    return prefixParams('emb', this.embed.initState());
  }

  embedding(p: Params, x: tf.Tensor, training: boolean, state: Params, updates?: Params): tf.Tensor2D {
    return applyPrefixed(this.embed, 'emb', p, x, training, state, updates);
  }

  /** Patch weights [n, p, p] in (0, 1) for probe/gallery pairs [n, ...inputShape]. */
  patchWeights(p: Params, probe: tf.Tensor, gallery: tf.Tensor): tf.Tensor3D {
    const n = probe.shape[0];
    const P = this.cfg.patches;
    let feat: tf.Tensor;
    if (this.deformNet) feat = this.deformNet.apply(unprefix('def', p), tf.concat([probe, gallery], 3), { training: true });
    else feat = tf.concat([tf.reshape(probe, [n, -1]), tf.reshape(gallery, [n, -1])], 1);
    return tf.reshape(tf.sigmoid(this.head.apply(unprefix('head', p), feat)), [n, P, P]) as tf.Tensor3D;
  }

  /** w⊙probe + (1−w)⊙gallery with patch weights upsampled to the input. */
  fuse(w: tf.Tensor3D, probe: tf.Tensor, gallery: tf.Tensor): tf.Tensor {
    const n = probe.shape[0];
    const P = this.cfg.patches;
    let wf: tf.Tensor;
    if (this.inputShape.length === 3) {
      const [h, ww, c] = this.inputShape as [number, number, number];
      // [n, P, 1, P, 1, 1] broadcast over [n, P, h/P, P, w/P, c]
      const blk = tf.reshape(w, [n, P, 1, P, 1, 1]);
      wf = tf.reshape(tf.mul(blk, tf.ones([1, 1, h / P, 1, ww / P, c])), [n, h, ww, c]);
    } else {
      const D = this.inputShape.reduce((a, b) => a * b, 1);
      wf = tf.reshape(tf.mul(tf.reshape(w, [n, P * P, 1]), tf.ones([1, 1, D / (P * P)])), probe.shape);
    }
    return tf.add(tf.mul(wf, probe), tf.mul(tf.sub(1, wf), gallery));
  }

  /** Class prototypes [ways, E] from embeddings [m, E] with labels. */
  static prototypes(emb: tf.Tensor2D, y: Int32Array, ways: number): tf.Tensor2D {
    const oh = oneHotF(y, ways); // [m, ways]
    const counts = tf.sum(oh, 0); // [ways]
    return tf.div(tf.matMul(oh, emb, true, false), tf.expandDims(counts, 1)) as tf.Tensor2D;
  }

  static logits(q: tf.Tensor2D, protos: tf.Tensor2D): tf.Tensor2D {
    const qq = tf.sum(tf.square(q), 1, true);
    const pp = tf.reshape(tf.sum(tf.square(protos), 1), [1, -1]);
    return tf.neg(tf.add(tf.sub(qq, tf.mul(2, tf.matMul(q, protos, false, true))), pp)) as tf.Tensor2D;
  }
}

/** Key of the gallery in {@link IdemeLearner.getParams}. */
const GALLERY_KEY = 'gallery';

function ce(logits: tf.Tensor2D, y: Int32Array): tf.Scalar {
  const oh = oneHotF(y, logits.shape[1]);
  return tf.neg(tf.mean(tf.sum(tf.mul(oh, tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

export class IdemeLearner implements MetaLearner<IdemeConfig>, TaskParallelLearner {
  readonly id = 'ideme';
  readonly family = 'memory' as const;
  readonly model: IdemeModel;
  readonly params: Record<string, tf.Variable>;
  bnState: Params;
  gallery: tf.Tensor | null = null;
  /** images picked by beginStep, added to the gallery by applyGradients */
  private pendingGallery: tf.Tensor | null = null;
  private adam: Adam;
  private rng: Rng;
  private steps = 0;
  private adaptCalls = 0;

  constructor(readonly config: IdemeConfig, readonly ctx: LearnerContext) {
    this.model = new IdemeModel(config, ctx.inputShape);
    this.rng = new Rng(ctx.seed);
    const init = this.model.init(this.rng.fork('init'));
    this.params = toVariables(init, 'ideme');
    this.bnState = this.model.initState();
    this.adam = new Adam({ lr: config.lr, clipNorm: config.gradClip });
  }

  /**
   * Training images of `batch` for the gallery buffer (reservoir-free: fills up to gallerySize, then
   * stops), drawn with the learner's generator; null when the gallery is full.
   */
  private galleryAdditions(batch: Episode[]): tf.Tensor | null {
    let have = this.gallery?.shape[0] ?? 0;
    const parts: tf.Tensor[] = [];
    for (const ep of batch) {
      if (have >= this.config.gallerySize) break;
      const sel = tf.tidy(() => {
        const x = tf.concat([ep.support.x, ep.query.x], 0);
        const take = Math.min(this.config.gallerySize - have, x.shape[0]);
        return tf.gather(x, tf.tensor1d(this.rng.sample(x.shape[0], take), 'int32'));
      });
      have += sel.shape[0];
      parts.push(sel);
    }
    if (parts.length === 0) return null;
    if (parts.length === 1) return parts[0]!;
    const all = tf.concat(parts, 0);
    tf.dispose(parts);
    return all;
  }

  /** Gallery images for `n` probes (nAug each), drawn with `rng`. */
  private galleryFor(n: number, fallback: tf.Tensor, rng: Rng): tf.Tensor {
    const g = this.gallery && this.gallery.shape[0] > 0 ? this.gallery : fallback;
    const m = this.config.augPerExample;
    const idx: number[] = [];
    for (let i = 0; i < n * m; i++) idx.push(rng.int(g.shape[0]));
    return tf.gather(g, tf.tensor1d(idx, 'int32'));
  }

  /** Embeddings and labels of the (possibly augmented) support set. */
  supportEmbeddings(p: Params, support: LabeledSet, deform: boolean, training: boolean, rng: Rng, updates?: Params): { emb: tf.Tensor2D; y: Int32Array } {
    const n = support.y.length;
    if (!deform) return { emb: this.model.embedding(p, support.x, training, this.bnState, updates), y: support.y };
    const m = this.config.augPerExample;
    const probe = tf.gather(support.x, tf.tensor1d(Array.from({ length: n * m }, (_, i) => Math.floor(i / m)), 'int32'));
    const gal = this.galleryFor(n, support.x, rng);
    const synth = this.model.fuse(this.model.patchWeights(p, probe, gal), probe, gal);
    const emb = this.model.embedding(p, tf.concat([support.x, synth], 0), training, this.bnState, updates);
    const y = new Int32Array(n + n * m);
    y.set(support.y);
    for (let i = 0; i < n * m; i++) y[n + i] = support.y[Math.floor(i / m)]!;
    return { emb, y };
  }

  episodeLoss(ep: Episode, deform: boolean, training: boolean, rng: Rng, updates?: Params): { loss: tf.Scalar; logits: tf.Tensor2D } {
    const p = this.params as Params;
    const { emb, y } = this.supportEmbeddings(p, ep.support, deform, training, rng, updates);
    const protos = IdemeModel.prototypes(emb, y, ep.ways);
    const logits = IdemeModel.logits(this.model.embedding(p, ep.query.x, training, this.bnState), protos);
    return { loss: ce(logits, ep.query.y), logits };
  }

  /** One meta-update: core's `taskParallelStep` with no pool (the same maths a worker pool runs). */
  metaTrainStep(batch: Episode[]): StepResult {
    return taskParallelStep(this, batch);
  }

  /**
   * Validates the batch, draws the step's seed from the learner's generator (task i draws its gallery
   * images from its own stream seeded by (that seed, i)), then picks this batch's images for the
   * gallery; they join it in {@link applyGradients}, after the step, so a batch never deforms with
   * its own images. Main thread only.
   */
  beginStep(batch: Episode[]): StepContext {
    if (batch.length === 0) throw new Error('ideme.metaTrainStep: empty meta-batch');
    for (const e of batch) if (e.ways > this.config.classes) throw new Error(`ideme: ${e.ways} ways but config 'classes' is ${this.config.classes}`);
    const ctx = stepContext(this.rng, batch.length);
    this.pendingGallery?.dispose();
    this.pendingGallery = this.galleryAdditions(batch);
    return ctx;
  }

  /**
   * Per episode: the query loss of the prototype classifier over its real and synthesised support
   * examples (batch-norm in training mode on that episode's batches), its gradient w.r.t. every
   * parameter, its correct query predictions. The last task also returns the batch-norm running
   * statistics of its support embedding (as in a single-thread step, the last episode's update wins).
   */
  taskGradients(episodes: Episode[], first: number, ctx: StepContext): TaskGradient[] {
    return episodes.map((ep, i) => {
      const index = first + i;
      if (ep.ways > this.config.classes) throw new Error(`ideme: ${ep.ways} ways but config 'classes' is ${this.config.classes}`);
      const rng = taskRng(this.id, ctx, index);
      return episodeTaskGradient(this.id, this.params, ctx, index, ep.query.y, (updates) => this.episodeLoss(ep, this.config.deform, true, rng, updates));
    });
  }

  /**
   * Adam on the mean episode gradient (tasks summed in task order); the last task's batch-norm
   * running statistics; the images picked in {@link beginStep} join the gallery.
   */
  applyGradients(tasks: TaskGradient[], _ctx: StepContext): StepResult {
    const s = applyMeanGradients(this.id, this.params, this.adam, tasks);
    if (this.pendingGallery) {
      const add = this.pendingGallery;
      this.pendingGallery = null;
      if (this.gallery) {
        const next = tf.concat([this.gallery, add], 0);
        this.gallery.dispose();
        add.dispose();
        this.gallery = next;
      } else this.gallery = add;
    }
    replaceBuffers(this.id, this.bnState, lastTaskBuffers(tasks));
    this.steps++;
    return { loss: s.loss / s.n, accuracy: s.total ? s.correct / s.total : NaN, metrics: { gradNorm: s.gradNorm } };
  }

  /**
   * Parameters, batch-norm running statistics and the gallery (keys `param:<k>`, `buffer:<k>`,
   * `gallery`; the gallery only once it holds images) as flat arrays.
   */
  getParams(): FlatParams {
    const out = variablesToFlat(this.params, this.bnState);
    if (this.gallery) out[GALLERY_KEY] = { shape: [...this.gallery.shape], data: flatData(this.gallery) };
    return out;
  }

  /** Replace parameters, running statistics and gallery with a copy from {@link getParams}. */
  setParams(p: FlatParams): void {
    const g = p[GALLERY_KEY];
    if (g && (g.shape.length !== this.ctx.inputShape.length + 1 || g.shape.slice(1).join('x') !== this.ctx.inputShape.join('x'))) {
      throw new Error(`ideme.setParams: gallery has shape [${g.shape}], expected [n, ${this.ctx.inputShape}]`);
    }
    setFlatVariables(this.id, p, this.params, this.bnState, [GALLERY_KEY]);
    this.gallery?.dispose();
    this.gallery = g ? tf.tensor(g.data, g.shape, 'float32') : null;
  }

  adapt(support: LabeledSet, ways: number, opts: { deform?: boolean; seed?: string | number } = {}): FewShotClassifier {
    if (ways > this.config.classes) throw new Error(`ideme: ${ways} ways but config 'classes' is ${this.config.classes}`);
    const deform = opts.deform ?? this.config.deform;
    const rng = new Rng(opts.seed ?? `${this.ctx.seed}/adapt/${this.adaptCalls++}`);
    const p = this.params as Params;
    const protos = tf.tidy(() => {
      const { emb, y } = this.supportEmbeddings(p, support, deform, false, rng);
      return IdemeModel.prototypes(emb, y, ways);
    });
    const snap = cloneAll(this.params);
    const st = cloneAll(this.bnState);
    const model = this.model;
    return {
      predict: (x) => tf.tidy(() => IdemeModel.logits(model.embedding(snap, x, false, st), protos)),
      toOnnx: () => exportIdeme(model, snap, st, protos),
      dispose: () => tf.dispose([protos, ...Object.values(snap), ...Object.values(st)]),
    };
  }

  state(): Checkpoint {
    const params = checkpointParams(this.params, this.bnState);
    if (this.gallery) params['gallery'] = tensorToData(this.gallery);
    return {
      format: 'metalearn-checkpoint',
      version: 1,
      learner: this.id,
      config: { ...this.config },
      params,
      optimizer: this.adam.state(),
      rng: this.rng.state(),
      progress: { steps: this.steps, adaptCalls: this.adaptCalls },
      meta: { inputShape: this.ctx.inputShape, seed: this.ctx.seed },
    };
  }

  load(c: Checkpoint): void {
    loadCheckpointParams(this.id, c, this.params, this.bnState, ['gallery']);
    this.gallery?.dispose();
    this.gallery = c.params['gallery'] ? dataToTensor(c.params['gallery']) : null;
    if (c.optimizer) this.adam.load(c.optimizer);
    if (c.rng) this.rng = Rng.fromState(c.rng);
    this.steps = c.progress?.steps ?? 0;
    this.adaptCalls = c.progress?.adaptCalls ?? 0;
  }

  dispose(): void {
    tf.dispose([...Object.values(this.params), ...Object.values(this.bnState)]);
    this.gallery?.dispose();
    this.pendingGallery?.dispose();
    this.pendingGallery = null;
    this.adam.dispose();
  }
}

/** The adapted prototype classifier: embedding + prototypes baked in; logits = −‖f(x) − p_c‖². */
export function exportIdeme(model: IdemeModel, p: Params, state: Params, protos: tf.Tensor2D): OnnxModel {
  const g = new OnnxGraphBuilder({ name: 'ideme-adapted' });
  const x = g.addInput('x', inputShapeOnnx(model.embed));
  const f = backboneOnnx(g, model.embed, unprefix('emb', p), unprefix('emb', state), x);
  const ff = g.addNode('ReduceSum', [g.addNode('Mul', [f, f]), g.int64([1])], { keepdims: 1 });
  const pt = tf.transpose(protos);
  const pp = tf.reshape(tf.sum(tf.square(protos), 1), [1, -1]);
  const cross = g.addNode('MatMul', [f, g.addInitializer('prototypes_t', pt)]);
  const d = g.addNode('Add', [g.addNode('Sub', [ff, g.addNode('Mul', [g.float(2, [], 'two'), cross])]), g.addInitializer('prototypes_sq', pp)]);
  tf.dispose([pt, pp]);
  g.addOutput(g.addNode('Neg', [d], {}, { output: 'logits' }), ['batch', protos.shape[0]]);
  return g.build({ producerName: 'metalearn/memory', docString: 'IDeMe-Net prototype classifier (deformation-augmented prototypes baked in)' });
}

export const idemeFactory: LearnerFactory<Partial<IdemeConfig>> = {
  id: 'ideme',
  family: 'memory',
  description: 'Image-Deformation Meta-Network (Chen et al. 2019): patch-wise probe/gallery fusion synthesises support examples for a prototype classifier',
  configSchema: idemeConfigSchema as unknown as Record<string, unknown>,
  create(raw, ctx) {
    const cfg = resolveConfig<IdemeConfig>('ideme', idemeConfigSchema, raw);
    return new IdemeLearner(cfg, ctx) as unknown as MetaLearner<Partial<IdemeConfig>>;
  },
};
