import * as tf from '@tensorflow/tfjs-core';
import {
  BatchNorm,
  Conv1d,
  Dense,
  GlobalAvgPool,
  LSTM,
  LeakyReLU,
  Rng,
  Sequential,
  type ApplyContext,
  type Episode,
  type ExportContext,
  type Layer,
  type LearnerContext,
  type LearnerFactory,
  type OnnxGraphBuilder,
  type Params,
} from '@metalearn/core';
import { commonConfigProperties, crossEntropy } from './embedding-learner.js';
import { prototypeHead, prototypeLogits } from './heads.js';
import { HeadedEmbeddingLearner, type ForwardTools, type HeadedEpisodeOutput, type HeadedLearnerConfig } from './learner-base.js';
import { classMask } from './siamese.js';

export interface TapNetEncoderConfig {
  /** number of random dimension groups (paper: 3) */
  groups: number;
  /** channels per group = max(1, floor(ratio · channels)) (paper: 2/3) */
  groupRatio: number;
  /** seed of the dimension permutation (part of the model: saved in the config) */
  groupSeed: number;
  /** filters of the conv blocks (paper: [256, 256, 128]); block 1 is per group, the rest shared */
  filters: number[];
  /** kernel sizes of the conv blocks (paper: [8, 5, 3]) */
  kernelSizes: number[];
  /** LSTM branch width; 0 = no LSTM branch (paper: 128) */
  lstmUnits: number;
  /** LeakyReLU slope */
  leakyAlpha: number;
}

export interface TapNetConfig extends HeadedLearnerConfig {
  encoder: TapNetEncoderConfig;
  /** widths of the fully connected mapping after the encoder (paper: [500, 300]); the last is the embedding size */
  mapping: number[];
  /** hidden width of the prototype attention network (paper: 128) */
  attentionUnits: number;
  /** weight of the prototype-separation term (0 = off) */
  protoLoss: number;
}

const posInt = { type: 'integer', minimum: 1 };

export const tapNetConfigSchema = {
  type: 'object',
  title: 'TapNet (time series attentional prototype network)',
  additionalProperties: false,
  properties: {
    optimizer: commonConfigProperties.optimizer,
    lrSchedule: { ...commonConfigProperties.lrSchedule, default: { every: 0, factor: 0.5 } },
    encoder: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'random dimension-group permutation + 1-D conv blocks (+ LSTM branch)',
      properties: {
        groups: { ...posInt, default: 3 },
        groupRatio: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.667 },
        groupSeed: { type: 'integer', minimum: 0, default: 0 },
        filters: { type: 'array', items: posInt, minItems: 1, default: [256, 256, 128] },
        kernelSizes: { type: 'array', items: posInt, minItems: 1, default: [8, 5, 3] },
        lstmUnits: { type: 'integer', minimum: 0, default: 128 },
        leakyAlpha: { type: 'number', minimum: 0, default: 0.01 },
      },
    },
    mapping: { type: 'array', items: posInt, minItems: 1, default: [500, 300] },
    attentionUnits: { ...posInt, default: 128 },
    protoLoss: { type: 'number', minimum: 0, default: 0.01, description: 'λ · mean over prototype pairs of exp(−½‖p_k − p_l‖²)' },
  },
} as const;

/** The channel groups of a TapNet encoder: `groups` random subsets of `ratio · channels` channels, from `seed`. */
export function tapnetGroups(channels: number, groups: number, ratio: number, seed: number): number[][] {
  if (!Number.isInteger(channels) || channels < 1) throw new Error(`tapnet: the input needs a static channel count >= 1, got ${channels}`);
  const k = Math.max(1, Math.min(channels, Math.floor(ratio * channels)));
  const rng = new Rng(`tapnet/groups/${seed}`);
  return Array.from({ length: groups }, () => rng.sample(channels, k));
}

const SEP = '__';

function sub(p: Params | undefined, prefix: string): Params {
  const out: Params = {};
  if (!p) return out;
  const pre = prefix + SEP;
  for (const [k, t] of Object.entries(p)) if (k.startsWith(pre)) out[k.slice(pre.length)] = t;
  return out;
}

function addPrefixed(out: Params, prefix: string, p: Params): void {
  for (const [k, t] of Object.entries(p)) out[prefix + SEP + k] = t;
}

/** trunk flat keys 'bn1.gamma' ↔ local 'bn1__gamma' */
const toLocal = (flat: Params): Params => Object.fromEntries(Object.entries(flat).map(([k, t]) => [k.replace('.', SEP), t]));
const toFlat = (local: Params): Params => Object.fromEntries(Object.entries(local).map(([k, t]) => [k.replace(SEP, '.'), t]));

/**
 * TapNet's feature encoder as one layer: for each channel group, gather its channels and apply that
 * group's conv block 1 (Conv1d 'same'); the groups are stacked along the batch and pass the shared
 * rest (BN + LeakyReLU after block 1, then conv + BN + LeakyReLU blocks, global average pooling over
 * time); the group features are concatenated, and (optionally) the mean over time of an LSTM's
 * hidden states on the full input is appended. Input [length, channels] with any length.
 * Output [groups · filters.at(-1) + lstmUnits].
 */
export class TapNetEncoder implements Layer {
  readonly kind = 'TapNetEncoder';
  readonly conv1: Conv1d[];
  readonly trunk: Sequential;
  readonly lstm?: LSTM;

  constructor(
    readonly name: string,
    readonly channels: number,
    readonly groups: number[][],
    readonly o: Pick<TapNetEncoderConfig, 'filters' | 'kernelSizes' | 'lstmUnits' | 'leakyAlpha'>,
  ) {
    if (o.filters.length !== o.kernelSizes.length) throw new Error(`tapnet: encoder.kernelSizes has ${o.kernelSizes.length} entries, encoder.filters has ${o.filters.length}`);
    for (const gr of groups) for (const c of gr) if (!(Number.isInteger(c) && c >= 0 && c < channels)) throw new Error(`tapnet: group channel ${c} is outside 0..${channels - 1}`);
    this.conv1 = groups.map((_, i) => new Conv1d({ name: `conv1g${i}`, filters: o.filters[0]!, kernelSize: o.kernelSizes[0]!, padding: 'same' }));
    const layers: Layer[] = [new BatchNorm({ name: 'bn1' }), new LeakyReLU({ name: 'act1', alpha: o.leakyAlpha })];
    for (let b = 1; b < o.filters.length; b++) {
      layers.push(
        new Conv1d({ name: `conv${b + 1}`, filters: o.filters[b]!, kernelSize: o.kernelSizes[b]!, padding: 'same' }),
        new BatchNorm({ name: `bn${b + 1}` }),
        new LeakyReLU({ name: `act${b + 1}`, alpha: o.leakyAlpha }),
      );
    }
    layers.push(new GlobalAvgPool({ name: 'gap' }));
    this.trunk = new Sequential(layers, [-1, o.filters[0]!]);
    if (o.lstmUnits > 0) this.lstm = new LSTM({ name: 'lstm', units: o.lstmUnits, returnSequences: true });
  }

  private check(s: number[]): void {
    if (s.length !== 2 || s[1] !== this.channels) throw new Error(`${this.name}: expects per-example input [length, ${this.channels}], got [${s}]`);
  }

  get convFeatures(): number {
    return this.groups.length * this.o.filters[this.o.filters.length - 1]!;
  }

  outputShape(s: number[]): number[] {
    this.check(s);
    return [this.convFeatures + (this.lstm ? this.o.lstmUnits : 0)];
  }

  paramShapes(s: number[]): Record<string, number[]> {
    this.check(s);
    const out: Record<string, number[]> = {};
    this.conv1.forEach((c, i) => {
      for (const [k, sh] of Object.entries(c.paramShapes([-1, this.groups[i]!.length]))) out[c.name + SEP + k] = sh;
    });
    for (const [k, sh] of Object.entries(this.trunk.paramShapes())) out[k.replace('.', SEP)] = sh;
    if (this.lstm) for (const [k, sh] of Object.entries(this.lstm.paramShapes([-1, this.channels]))) out['lstm' + SEP + k] = sh;
    return out;
  }

  init(rng: Rng, s: number[]): Params {
    this.check(s);
    const out: Params = {};
    this.conv1.forEach((c, i) => addPrefixed(out, c.name, c.init(rng.fork(c.name), [-1, this.groups[i]!.length])));
    Object.assign(out, toLocal(this.trunk.init(rng.fork('trunk'))));
    if (this.lstm) addPrefixed(out, 'lstm', this.lstm.init(rng.fork('lstm'), [-1, this.channels]));
    return out;
  }

  initState(): Params {
    return toLocal(this.trunk.initState());
  }

  apply(p: Params, x: tf.Tensor, ctx: ApplyContext): tf.Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.channels) throw new Error(`${this.name}: expects a batch [n, length, ${this.channels}], got shape [${x.shape}]`);
    const n = x.shape[0];
    const tctx: ApplyContext = { training: ctx.training, batchStats: ctx.batchStats, rng: ctx.rng, state: ctx.state ? toFlat(ctx.state) : undefined };
    if (ctx.updates) tctx.updates = {};
    const out = tf.tidy(() => {
      const outs = this.conv1.map((c, i) => c.apply(sub(p, c.name), tf.gather(x, tf.tensor1d(this.groups[i]!, 'int32'), 2)));
      const h = this.trunk.apply(toFlat(p), tf.concat(outs, 0), tctx); // [g·n, f]
      const f = h.shape[1]!;
      let feats = tf.reshape(tf.transpose(tf.reshape(h, [this.groups.length, n, f]), [1, 0, 2]), [n, this.groups.length * f]);
      if (this.lstm) feats = tf.concat([feats, tf.mean(this.lstm.apply(sub(p, 'lstm'), x), 1)], 1);
      return feats;
    });
    if (ctx.updates && tctx.updates) Object.assign(ctx.updates, toLocal(tctx.updates));
    return out;
  }

  toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string {
    this.check(ctx.shape);
    const len = ctx.shape[0]!;
    const x = ctx.channelsLast(input);
    const outs = this.conv1.map((c, i) => {
      const gi = g.addNode('Gather', [x, g.int64(this.groups[i]!, `${this.name}.group${i}`)], { axis: 2 });
      ctx.layout = 'channelsLast';
      ctx.shape = [len, this.groups[i]!.length];
      const y = c.toOnnx(g, sub(p, c.name), gi, ctx);
      return ctx.channelsFirst(y);
    });
    let h = g.addNode('Concat', outs, { axis: 0 });
    const pv = this.trunk.localViews(toFlat(p));
    const sv = this.trunk.localViews(ctx.state ? toFlat(ctx.state) : undefined);
    const saved = ctx.state;
    this.trunk.layers.forEach((l, i) => {
      ctx.shape = [...this.trunk.shapes[i]!];
      ctx.state = sv[i];
      h = l.toOnnx(g, pv[i]!, h, ctx);
    });
    ctx.state = saved;
    ctx.shape = [...this.trunk.outputShape];
    h = ctx.channelsLast(h);
    const f = this.trunk.outputShape[0]!;
    const G = this.groups.length;
    const r1 = g.addNode('Reshape', [h, g.int64([G, -1, f], `${this.name}.shape_gnf`)]);
    const tr = g.addNode('Transpose', [r1], { perm: [1, 0, 2] });
    let feats = g.addNode('Reshape', [tr, g.int64([-1, G * f], `${this.name}.shape_nf`)]);
    if (this.lstm) {
      ctx.layout = 'channelsLast';
      ctx.shape = [len, this.channels];
      const hs = this.lstm.toOnnx(g, sub(p, 'lstm'), x, ctx); // [n, len, u]
      const m = g.addNode('ReduceMean', [hs], { axes: [1], keepdims: 0 });
      feats = g.addNode('Concat', [feats, m], { axis: 1 });
    }
    ctx.layout = 'channelsLast';
    ctx.shape = this.outputShape([len, this.channels]);
    return feats;
  }
}

/** The TapNet embedding network: encoder, then the fully connected mapping (Dense → BN → LeakyReLU, last Dense linear). */
export function tapnetBackbone(cfg: TapNetConfig, inputShape: readonly number[]): Sequential {
  if (inputShape.length !== 2) throw new Error(`tapnet needs time-series inputs [length, channels], the dataset gives [${inputShape}]`);
  const C = inputShape[1]!;
  const e = cfg.encoder;
  const groups = tapnetGroups(C, e.groups, e.groupRatio, e.groupSeed);
  const layers: Layer[] = [new TapNetEncoder('encoder', C, groups, e)];
  cfg.mapping.forEach((u, i) => {
    layers.push(new Dense({ name: `fc${i + 1}`, units: u }));
    if (i < cfg.mapping.length - 1) layers.push(new BatchNorm({ name: `fcbn${i + 1}` }), new LeakyReLU({ name: `fcact${i + 1}`, alpha: e.leakyAlpha }));
  });
  // any length: the declared length is dynamic
  return new Sequential(layers, [-1, C]);
}

/**
 * Attention-weighted class prototypes (TapNet §"attentional prototype"): for the support embeddings
 * e_i of class k, a_i = softmax_i(w₂ · tanh(W₁ᵀ e_i + b₁)) over that class, p_k = Σ a_i e_i.
 */
export function attentionalPrototypes(es: tf.Tensor2D, ys: Int32Array, ways: number, w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const s = tf.sum(tf.mul(tf.tanh(tf.add(tf.matMul(es, w1 as tf.Tensor2D), b1)), w2), 1); // [m]
    const a = tf.softmax(tf.add(tf.expandDims(s, 0), classMask(ys, ways)), 1); // [ways, m]
    return tf.matMul(a as tf.Tensor2D, es);
  });
}

/** Mean over prototype pairs k < l of exp(−½‖p_k − p_l‖²) (0 for a single class). */
export function prototypeSeparation(protos: tf.Tensor2D): tf.Scalar {
  const w = protos.shape[0];
  if (w < 2) return tf.scalar(0);
  return tf.tidy(() => {
    const d2 = tf.sum(tf.square(tf.sub(tf.expandDims(protos, 1), tf.expandDims(protos, 0))), 2);
    const off = tf.sub(tf.ones([w, w]), tf.eye(w));
    return tf.div(tf.sum(tf.mul(tf.exp(tf.mul(d2, -0.5)), off)), w * (w - 1)) as tf.Scalar;
  });
}

/**
 * TapNet (Zhang, Gao, Lin & Lu, AAAI 2020), an attentional prototype network for multivariate time
 * series, in episodic form. Embedding: random dimension-group permutation → per-group 1-D conv
 * block 1 → shared conv blocks → global average pooling, concatenated over groups, + mean LSTM
 * hidden state, → fully connected mapping. Classification: attention-weighted prototypes of the
 * support embeddings, logits = −squared Euclidean distance. Loss: query cross-entropy +
 * λ · prototype-separation term. See siamese-tapnet.md (package folder) for where this departs from the paper.
 */
export class TapNet extends HeadedEmbeddingLearner<TapNetConfig> {
  readonly id = 'tapnet';
  readonly groups: number[][];

  constructor(config: TapNetConfig, ctx: LearnerContext) {
    super(config, ctx, tapnetBackbone(config, ctx.inputShape), 'tapnet');
    this.groups = (this.backbone.layers[0] as TapNetEncoder).groups;
  }

  protected headShapes(): Record<string, number[]> {
    const d = this.embeddingSize;
    const a = this.config.attentionUnits;
    return { 'attention.w1': [d, a], 'attention.b1': [a], 'attention.w2': [a] };
  }

  protected initHead(rng: Rng): Params {
    const d = this.backbone.outputShape[0]!;
    const a = this.config.attentionUnits;
    const b = 1 / Math.sqrt(d);
    const b2 = 1 / Math.sqrt(a);
    return {
      'attention.w1': tf.tensor2d(rng.uniformArray(d * a, -b, b), [d, a]),
      'attention.b1': tf.tensor1d(rng.uniformArray(a, -b, b)),
      'attention.w2': tf.tensor1d(rng.uniformArray(a, -b2, b2)),
    };
  }

  private protos(p: Readonly<Params>, es: tf.Tensor2D, ys: Int32Array, ways: number): tf.Tensor2D {
    return attentionalPrototypes(es, ys, ways, p['attention.w1']!, p['attention.b1']!, p['attention.w2']!);
  }

  protected episodeForward(p: Params, ep: Episode, tools: ForwardTools): HeadedEpisodeOutput {
    const ns = ep.support.x.shape[0];
    let es: tf.Tensor2D;
    let eq: tf.Tensor2D;
    if (ep.support.x.shape[1] === ep.query.x.shape[1]) {
      const emb = tools.embed(tf.concat([ep.support.x, ep.query.x], 0));
      es = tf.slice(emb, [0, 0], [ns, -1]) as tf.Tensor2D;
      eq = tf.slice(emb, [ns, 0], [-1, -1]) as tf.Tensor2D;
    } else {
      // support and query of different lengths: two batches
      es = tools.embed(ep.support.x);
      eq = tools.embed(ep.query.x);
    }
    const protos = this.protos(p, es, ep.support.y, ep.ways);
    const logits = prototypeLogits(eq, protos, 'sqeuclidean');
    let loss = crossEntropy(logits, ep.query.y);
    if (this.config.protoLoss > 0) loss = tf.add(loss, tf.mul(prototypeSeparation(protos), this.config.protoLoss)) as tf.Scalar;
    return { loss, logits };
  }

  protected adaptedHead(p: Params, es: tf.Tensor2D, ys: Int32Array, ways: number): { head: Layer; state: Params } {
    return { head: prototypeHead({ ways, distance: 'sqeuclidean' }), state: { prototypes: this.protos(p, es, ys, ways) } };
  }

  protected override checkpointMeta(): Record<string, unknown> {
    return { groups: this.groups };
  }

  protected override checkMeta(meta: Record<string, unknown>): void {
    if (meta['groups'] !== undefined && JSON.stringify(meta['groups']) !== JSON.stringify(this.groups)) {
      throw new Error(`tapnet.load: the checkpoint's channel groups ${JSON.stringify(meta['groups'])} differ from this learner's ${JSON.stringify(this.groups)} (same encoder.groupSeed / groups / groupRatio and channel count needed)`);
    }
  }
}

export const tapNetFactory: LearnerFactory<TapNetConfig> = {
  id: 'tapnet',
  family: 'metric',
  description: 'TapNet (Zhang et al. 2020): random dimension groups + 1-D conv (+ LSTM) encoder, attentional prototypes, for multivariate time series',
  configSchema: tapNetConfigSchema,
  create: (config, ctx) => new TapNet(config, ctx),
};
