import * as tf from '@tensorflow/tfjs-core';
import { Rng, type ApplyContext, type Episode, type ExportContext, type Layer, type LearnerContext, type LearnerFactory, type OnnxGraphBuilder, type Params } from '@metalearn/core';
import { backboneSchema, buildBackbone, type BackboneConfig } from './backbone.js';
import { commonConfigProperties } from './embedding-learner.js';
import { HeadedEmbeddingLearner, bceWithLogits, type ForwardTools, type HeadedEpisodeOutput, type HeadedLearnerConfig } from './learner-base.js';
import { KOCH_DISTORTION, affineDistort } from './siamese-distort.js';

export type SiameseMode = 'pairs' | 'episodic';

export interface SiameseConfig extends HeadedLearnerConfig {
  backbone: BackboneConfig;
  /** 'pairs': Koch et al.'s verification training on same/different pairs; 'episodic': every query against every support example */
  mode: SiameseMode;
  /** pairs mode: pairs drawn from each episode (half same-class, half different) */
  pairsPerEpisode: number;
  /** pairs mode: apply Koch's random affine distortions to both images of a pair (image inputs only) */
  distort: boolean;
}

export const siameseConfigSchema = {
  type: 'object',
  title: 'Siamese Networks',
  additionalProperties: false,
  properties: {
    ...commonConfigProperties,
    backbone: backboneSchema,
    mode: { enum: ['pairs', 'episodic'], default: 'pairs', description: "'pairs': same/different verification pairs drawn from each episode (Koch et al. 2015); 'episodic': every query against every support example (Meta-Siamese)" },
    pairsPerEpisode: { type: 'integer', minimum: 2, default: 64, description: 'pairs mode: pairs per episode among the distorted copies of its examples, half same-class and half different' },
    distort: { type: 'boolean', default: true, description: "pairs mode: Koch's random affine distortions (rotation ±10°, shear ±0.3, scale 0.8–1.2, shift ±2 px, each with p = 0.5) on [h, w, c] inputs" },
  },
} as const;

/** Large negative added to the scores of support examples of other classes before the per-class max. */
const MASK_NEG = -1e9;

/**
 * Koch et al.'s similarity score in logit form: z(q, s) = Σ_j α_j |e_q,j − e_s,j| + β, for every
 * query [n, d] against every support example [m, d] → [n, m]. p(same) = σ(z).
 */
export function weightedL1Scores(eq: tf.Tensor2D, es: tf.Tensor2D, alpha: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const diff = tf.abs(tf.sub(tf.expandDims(eq, 1), tf.expandDims(es, 0))); // [n, m, d]
    return tf.add(tf.sum(tf.mul(diff, alpha), 2), bias) as tf.Tensor2D;
  });
}

/** The same score for aligned pairs a[i], b[i] ([P, d] each) → [P]. */
export function weightedL1PairScores(a: tf.Tensor2D, b: tf.Tensor2D, alpha: tf.Tensor, bias: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => tf.add(tf.sum(tf.mul(tf.abs(tf.sub(a, b)), alpha), 1), bias) as tf.Tensor1D);
}

/** One-hot selection matrix [P, n]: row k picks example idx[k]. */
function selector(idx: Int32Array, n: number): tf.Tensor2D {
  const m = new Float32Array(idx.length * n);
  idx.forEach((v, k) => (m[k * n + v] = 1));
  return tf.tensor2d(m, [idx.length, n]);
}

/** [ways, m] mask: 0 where support example i belongs to class c, −1e9 elsewhere; every class needs an example. */
export function classMask(y: Int32Array, ways: number): tf.Tensor2D {
  const m = new Float32Array(ways * y.length).fill(MASK_NEG);
  const seen = new Uint8Array(ways);
  y.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0 || c >= ways) throw new Error(`siamese: support label ${c} is outside 0..${ways - 1}`);
    m[c * y.length + i] = 0;
    seen[c] = 1;
  });
  const empty = seen.indexOf(0);
  if (empty >= 0) throw new Error(`siamese: class ${empty} has no support example`);
  return tf.tensor2d(m, [ways, y.length]);
}

/** Per-class max of scores [n, m] over each class's support examples (mask from {@link classMask}) → [n, ways]. */
export function classMaxScores(z: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.max(tf.add(tf.expandDims(z, 1), mask), 2) as tf.Tensor2D);
}

/**
 * Head of an adapted Siamese network: state `{support [m, d], alpha [d], bias [], mask [ways, m]}`;
 * input query embeddings [n, d]; output logits [n, ways] = per class, the highest similarity logit
 * z(q, s) over that class's support examples (one-shot: the single example).
 */
export function siameseHead(opts: { name?: string; ways: number }): Layer {
  const name = opts.name ?? 'head';
  const flat = (s: number[]) => {
    if (s.length !== 1) throw new Error(`${name}: expects flat embeddings [n, d], got per-example shape [${s}]`);
  };
  return {
    name,
    kind: 'SiameseHead',
    outputShape(s: number[]) {
      flat(s);
      return [opts.ways];
    },
    init() {
      throw new Error(`${name}: the support memory comes from adaptation (Siamese.adapt), not from init`);
    },
    apply(p: Params, x: tf.Tensor, _ctx: ApplyContext) {
      return tf.tidy(() => classMaxScores(weightedL1Scores(x as tf.Tensor2D, p['support'] as tf.Tensor2D, p['alpha']!, p['bias']!), p['mask'] as tf.Tensor2D));
    },
    toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext) {
      flat(ctx.shape);
      const support = g.addInitializer(`${name}.support`, p['support']!);
      const alpha = g.addInitializer(`${name}.alpha`, p['alpha']!);
      const bias = g.addInitializer(`${name}.bias`, p['bias']!);
      const mask = g.addInitializer(`${name}.mask`, p['mask']!);
      const xq = g.addNode('Unsqueeze', [input, g.int64([1], `${name}.axis1`)]); // [n, 1, d]
      const diff = g.addNode('Abs', [g.addNode('Sub', [xq, support])]); // [n, m, d]
      const z = g.addNode('Add', [g.addNode('MatMul', [diff, alpha]), bias]); // [n, m]
      const zm = g.addNode('Add', [g.addNode('Unsqueeze', [z, g.int64([1], `${name}.axis1b`)]), mask]); // [n, ways, m]
      return g.addNode('ReduceMax', [zm], { axes: [2], keepdims: 0 });
    },
  };
}

/**
 * Siamese Networks (Koch, Zemel & Salakhutdinov 2015): twin encoders with shared weights (one
 * backbone applied to both inputs), p(same | a, b) = σ(Σ_j α_j |f(a)_j − f(b)_j| + β), trained with
 * binary cross-entropy.
 * - `pairs` (Koch): from each episode's examples (support ∪ query) draw `pairsPerEpisode` pairs,
 *   half same-class and half different-class, distort both images with random affine maps.
 * - `episodic` (Meta-Siamese): every query against every support example of the episode; the loss
 *   is the class-balanced BCE (mean over same-class pairs and mean over different-class pairs,
 *   averaged), since 1-shot N-way episodes have N−1 negatives per positive.
 * One-shot classification: a query's logit for class c is its highest similarity logit over c's
 * support examples (the most similar support example wins). The adapted classifier is the backbone
 * plus {@link siameseHead} with the support embeddings, α, β and the class mask as constants.
 */
export class SiameseNet extends HeadedEmbeddingLearner<SiameseConfig> {
  readonly id = 'siamese';

  constructor(config: SiameseConfig, ctx: LearnerContext) {
    super(config, ctx, buildBackbone(config.backbone, ctx.inputShape), 'siamese');
    if (!(config.mode === 'pairs' || config.mode === 'episodic')) throw new Error(`siamese: config 'mode' must be 'pairs' or 'episodic', got ${JSON.stringify(config.mode)}`);
    if (config.mode === 'pairs' && !(Number.isInteger(config.pairsPerEpisode) && config.pairsPerEpisode >= 2)) {
      throw new Error(`siamese: config 'pairsPerEpisode' must be an integer >= 2, got ${JSON.stringify(config.pairsPerEpisode)}`);
    }
  }

  protected headShapes(): Record<string, number[]> {
    return { 'siamese.alpha': [this.embeddingSize], 'siamese.bias': [] };
  }

  protected initHead(rng: Rng): Params {
    // α_j ~ U(−2/d, 0), β = 0: z starts as minus the mean absolute difference, so the untrained
    // network already ranks by L1 nearness (a sign-symmetric init such as PyTorch's Linear default
    // starts out ranking the *least* similar support example first about half the time)
    const d = this.backbone.outputShape[0]!;
    return { 'siamese.alpha': tf.tensor1d(rng.uniformArray(d, -2 / d, 0)), 'siamese.bias': tf.scalar(0) };
  }

  protected episodeForward(p: Params, ep: Episode, tools: ForwardTools): HeadedEpisodeOutput {
    const alpha = p['siamese.alpha']!;
    const bias = p['siamese.bias']!;
    const ns = ep.support.x.shape[0];
    const nq = ep.query.x.shape[0];
    const mask = classMask(ep.support.y, ep.ways);
    if (this.config.mode === 'episodic') {
      const emb = tools.embed(tf.concat([ep.support.x, ep.query.x], 0));
      const es = tf.slice(emb, [0, 0], [ns, -1]) as tf.Tensor2D;
      const eq = tf.slice(emb, [ns, 0], [-1, -1]) as tf.Tensor2D;
      const z = weightedL1Scores(eq, es, alpha, bias);
      const same = new Float32Array(nq * ns);
      let pos = 0;
      for (let i = 0; i < nq; i++) for (let j = 0; j < ns; j++) if (ep.query.y[i] === ep.support.y[j]) (same[i * ns + j] = 1), pos++;
      const t = tf.tensor2d(same, [nq, ns]);
      const l = bceWithLogits(z, t);
      const neg = nq * ns - pos;
      const lossPos = pos > 0 ? tf.div(tf.sum(tf.mul(l, t)), pos) : tf.scalar(0);
      const lossNeg = neg > 0 ? tf.div(tf.sum(tf.mul(l, tf.sub(1, t))), neg) : tf.scalar(0);
      const loss = tf.div(tf.add(lossPos, lossNeg), pos > 0 && neg > 0 ? 2 : 1) as tf.Scalar;
      return { loss, logits: classMaxScores(z, mask) };
    }
    // pairs mode: one distorted copy of every example of the episode; verification pairs among the copies
    const n = ns + nq;
    const { x: xd, i, j, same } = this.samplePairs(ep, tools.rng);
    const emb = tools.embed(tf.concat(xd ? [ep.support.x, ep.query.x, xd] : [ep.support.x, ep.query.x], 0));
    const es = tf.slice(emb, [0, 0], [ns, -1]) as tf.Tensor2D;
    const eq = tf.slice(emb, [ns, 0], [nq, -1]) as tf.Tensor2D;
    const ed = tf.slice(emb, [xd ? n : 0, 0], [n, -1]) as tf.Tensor2D;
    const zp = weightedL1PairScores(tf.matMul(selector(i, n), ed), tf.matMul(selector(j, n), ed), alpha, bias);
    const loss = tf.mean(bceWithLogits(zp, tf.tensor1d(same))) as tf.Scalar;
    // accuracy: one-shot classification of the (undistorted) queries by the same network
    return { loss, logits: classMaxScores(weightedL1Scores(eq, es, alpha, bias), mask) };
  }

  /**
   * Mean verification loss (binary cross-entropy of σ(z) against same/different) of the pairs drawn
   * from `ep` with `new Rng(seed)` (distorted as in training when `distort` is on), in eval mode,
   * without any update: a fixed yardstick for the pair objective.
   */
  pairLoss(ep: Episode, seed: number | string, pairs = this.config.pairsPerEpisode): number {
    return tf.tidy(() => {
      const n = ep.support.y.length + ep.query.y.length;
      const { x: xd, i, j, same } = this.samplePairs(ep, new Rng(seed), pairs);
      const ed = this.embed(xd ?? tf.concat([ep.support.x, ep.query.x], 0));
      const z = weightedL1PairScores(tf.matMul(selector(i, n), ed), tf.matMul(selector(j, n), ed), this.params['siamese.alpha']!, this.params['siamese.bias']!);
      return tf.mean(bceWithLogits(z, tf.tensor1d(same))).dataSync()[0]!;
    });
  }

  /**
   * Draw the verification pairs of one episode (indices into support ∪ query; first half
   * same-class, second half different-class) and, when distortions are on and the inputs are
   * images, one randomly distorted copy of every example (`x`, same order); else `x` is null.
   */
  private samplePairs(ep: Episode, rng: Rng, P = this.config.pairsPerEpisode): { x: tf.Tensor | null; i: Int32Array; j: Int32Array; same: Float32Array } {
    const shape = ep.support.x.shape.slice(1);
    const ys = [...ep.support.y, ...ep.query.y];
    const byClass: number[][] = Array.from({ length: ep.ways }, () => []);
    ys.forEach((c, k) => byClass[c]!.push(k));
    const multi = byClass.map((l, c) => (l.length >= 2 ? c : -1)).filter((c) => c >= 0);
    const nonEmpty = byClass.map((l, c) => (l.length >= 1 ? c : -1)).filter((c) => c >= 0);
    if (multi.length === 0) throw new Error(`siamese (pairs mode): no class of the episode has two examples (support + query) to form a same-class pair; use queries >= 1 or mode 'episodic'`);
    if (nonEmpty.length < 2) throw new Error(`siamese (pairs mode): the episode has fewer than two classes, no different-class pair possible`);
    const I = new Int32Array(P);
    const J = new Int32Array(P);
    const same = new Float32Array(P);
    const nPos = Math.floor(P / 2);
    for (let k = 0; k < P; k++) {
      if (k < nPos) {
        const cls = byClass[multi[rng.int(multi.length)]!]!;
        const [u, v] = rng.sample(cls.length, 2) as [number, number];
        I[k] = cls[u]!;
        J[k] = cls[v]!;
        same[k] = 1;
      } else {
        const [u, v] = rng.sample(nonEmpty.length, 2) as [number, number];
        const c1 = byClass[nonEmpty[u]!]!;
        const c2 = byClass[nonEmpty[v]!]!;
        I[k] = c1[rng.int(c1.length)]!;
        J[k] = c2[rng.int(c2.length)]!;
      }
    }
    if (!(shape.length === 3 && this.config.distort)) return { x: null, i: I, j: J, same };
    const [h, w, c] = shape as [number, number, number];
    const size = h * w * c;
    const src = new Float32Array(ys.length * size);
    src.set(ep.support.x.dataSync() as Float32Array, 0);
    src.set(ep.query.x.dataSync() as Float32Array, ep.support.y.length * size);
    const out = new Float32Array(ys.length * size);
    for (let k = 0; k < ys.length; k++) affineDistort(src.subarray(k * size, (k + 1) * size), h, w, c, rng, KOCH_DISTORTION, out.subarray(k * size, (k + 1) * size));
    return { x: tf.tensor(out, [ys.length, ...shape]), i: I, j: J, same };
  }

  protected adaptedHead(p: Params, es: tf.Tensor2D, ys: Int32Array, ways: number): { head: Layer; state: Params } {
    const mask = classMask(ys, ways);
    return {
      head: siameseHead({ ways }),
      state: { support: tf.clone(es), alpha: tf.clone(p['siamese.alpha']!), bias: tf.clone(p['siamese.bias']!), mask },
    };
  }
}

export const siameseFactory: LearnerFactory<SiameseConfig> = {
  id: 'siamese',
  family: 'metric',
  description: 'Siamese Networks (Koch et al. 2015): shared-weight twin encoder, weighted L1 + sigmoid verification, one-shot by the most similar support example',
  configSchema: siameseConfigSchema,
  create: (config, ctx) => new SiameseNet(config, ctx),
};
