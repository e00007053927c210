import * as tf from '@tensorflow/tfjs-core';
import {
  LSTM,
  addLSTMCellInitializers,
  lstmCell,
  lstmCellOnnx,
  onnxAttr,
  uniformTensor,
  type ApplyContext,
  type Episode,
  type ExportContext,
  type LSTMCellParams,
  type Layer,
  type LearnerContext,
  type LearnerFactory,
  type OnnxGraphBuilder,
  type Params,
  type Rng,
} from '@metalearn/core';
import { EmbeddingLearner, commonConfigProperties, type EmbeddingLearnerConfig, type EpisodeOutput } from './embedding-learner.js';
import type { ForwardTools, HeadedEpisodeOutput } from './learner-base.js';
import { l2normalize, matchingHead, matchingLogProbs, oneHot } from './heads.js';

export interface MatchingNetConfig extends EmbeddingLearnerConfig {
  /** multiplies the cosine similarities before the attention softmax (1 = the paper) */
  attentionScale: number;
  /** full-context embeddings (Vinyals et al. 2016, appendix A); default false */
  fce?: boolean;
  /** FCE: processing steps K of the query attention LSTM (default 5) */
  fceSteps?: number;
}

/** Default number of processing steps K of the FCE query attention LSTM. */
export const DEFAULT_FCE_STEPS = 5;

export const matchingNetConfigSchema = {
  type: 'object',
  title: 'Matching Networks',
  additionalProperties: false,
  properties: {
    ...commonConfigProperties,
    attentionScale: { type: 'number', exclusiveMinimum: 0, default: 1, description: 'softmax temperature⁻¹ on cosine similarities (1 = Vinyals et al.)' },
    fce: {
      type: 'boolean',
      default: false,
      description: 'full-context embeddings (Vinyals et al. 2016, appendix A): bidirectional LSTM over the support set, attention LSTM over the support for each query',
    },
    fceSteps: { type: 'integer', minimum: 1, maximum: 100, default: DEFAULT_FCE_STEPS, description: 'fce: processing steps K of the query attention LSTM' },
  },
} as const;

// ---------------------------------------------------------------------------------------------
// Full-context embeddings
// ---------------------------------------------------------------------------------------------

/** Parameter-key prefix of the FCE parameters in the learner's flat parameter map. */
export const FCE_PREFIX = 'fce';

/** Cell parameters of the query attention LSTM: input f'(x) [d], hidden state [h, r] [2d], units d. */
function attentionCellShapes(d: number): Record<'weight_ih' | 'weight_hh' | 'bias', number[]> {
  return { weight_ih: [d, 4 * d], weight_hh: [2 * d, 4 * d], bias: [4 * d] };
}

/** Fresh attention-LSTM parameters, U(±1/√d) like PyTorch's LSTM with hidden size d. */
function initAttentionCell(rng: Rng, d: number): Params {
  const b = 1 / Math.sqrt(d);
  const s = attentionCellShapes(d);
  return { weight_ih: uniformTensor(rng, s.weight_ih, -b, b), weight_hh: uniformTensor(rng, s.weight_hh, -b, b), bias: uniformTensor(rng, s.bias, -b, b) };
}

/** The two LSTM layers (core's {@link LSTM}) of the support encoder g, hidden size d. */
function supportLSTMs(d: number): { fwd: LSTM; bwd: LSTM } {
  return {
    fwd: new LSTM({ name: `${FCE_PREFIX}.g_fwd`, units: d, returnSequences: true }),
    bwd: new LSTM({ name: `${FCE_PREFIX}.g_bwd`, units: d, returnSequences: true }),
  };
}

function local(p: Params, prefix: string, keys: readonly string[]): Params {
  const out: Params = {};
  for (const k of keys) {
    const t = p[`${prefix}.${k}`];
    if (!t) throw new Error(`matchingnet (fce): missing parameter '${prefix}.${k}'`);
    out[k] = t;
  }
  return out;
}

const CELL_KEYS = ['weight_ih', 'weight_hh', 'bias'] as const;

/**
 * FCE support encoder (Vinyals et al. 2016, A.2): a bidirectional LSTM with hidden size d reads
 * the support embeddings g'(x_1..x_m) [m, d] in the given order; g(x_i) = h→_i + h←_i + g'(x_i).
 * `p` is the learner's flat parameter map (keys `fce.g_fwd.*`, `fce.g_bwd.*`). Differentiable.
 */
export function fceSupportEmbedding(p: Params, es: tf.Tensor2D): tf.Tensor2D {
  const d = es.shape[1];
  const { fwd, bwd } = supportLSTMs(d);
  const pf = local(p, fwd.name, CELL_KEYS);
  const pb = local(p, bwd.name, CELL_KEYS);
  return tf.tidy(() => {
    const seq = tf.expandDims(es, 0); // one sequence [1, m, d]
    const hf = fwd.apply(pf, seq) as tf.Tensor3D;
    const hb = tf.reverse(bwd.apply(pb, tf.reverse(seq, 1)), 1) as tf.Tensor3D;
    return tf.add(tf.squeeze(tf.add(hf, hb), [0]), es) as tf.Tensor2D;
  });
}

/**
 * FCE query encoder (Vinyals et al. 2016, A.1): an LSTM run for K processing steps on f'(x) [n, d]
 * while attending over the encoded support g [m, d]:
 *   ĥ_k, c_k = LSTM(f'(x), [h_{k−1}, r_{k−1}], c_{k−1}),   h_k = ĥ_k + f'(x),
 *   r_{k−1} = Σ_i softmax_i(h_{k−1}ᵀ g(x_i)) g(x_i),       f(x, S) = h_K,
 * starting from ĥ_0 = c_0 = 0 (so h_0 = f'(x)). The LSTM's recurrent input is [h, r] (weight_hh
 * [2d, 4d]); the step is core's {@link lstmCell}, exported by core's {@link lstmCellOnnx}.
 */
export function fceQueryEmbedding(cell: LSTMCellParams, fx: tf.Tensor2D, g: tf.Tensor2D, steps: number): tf.Tensor2D {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`matchingnet (fce): fceSteps must be a positive integer, got ${steps}`);
  return tf.tidy(() => {
    const [n, d] = fx.shape;
    const xProj = tf.matMul(fx, cell.weight_ih as tf.Tensor2D) as tf.Tensor2D; // f'(x) is the input at every step
    let h: tf.Tensor2D = fx;
    let c = tf.zeros([n, d]) as tf.Tensor2D;
    for (let k = 0; k < steps; k++) {
      const r = tf.matMul(tf.softmax(tf.matMul(h, g, false, true), 1), g); // r_{k−1} [n, d]
      const st = lstmCell(cell, null, { h: tf.concat([h, r], 1) as tf.Tensor2D, c }, xProj);
      h = tf.add(st.h, fx) as tf.Tensor2D;
      c = st.c;
    }
    return h;
  });
}

/** ONNX twin of {@link fceQueryEmbedding}; `gName` / `gTName` are the support g [m, d] and gᵀ [d, m]. */
function fceQueryOnnx(g: OnnxGraphBuilder, weights: { weight_ih: string; weight_hh: string; bias: string }, d: number, fx: string, gName: string, gTName: string, steps: number, base: string): string {
  let c = g.addNode('ConstantOfShape', [g.addNode('Shape', [fx])], { value: onnxAttr.tensor({ data: [0], shape: [1], dtype: 'float32' }) });
  let h = fx;
  for (let k = 0; k < steps; k++) {
    const att = g.addNode('Softmax', [g.addNode('MatMul', [h, gTName])], { axis: 1 });
    const r = g.addNode('MatMul', [att, gName]);
    const hr = g.addNode('Concat', [h, r], { axis: 1 });
    const st = lstmCellOnnx(g, weights, d, fx, hr, c);
    h = g.addNode('Add', [st.h, fx], {}, { output: g.uniqueName(`${base}.h${k + 1}`) });
    c = st.c;
  }
  return h;
}

/**
 * Head Layer of an adapted Matching Network with full-context embeddings. Parameters: `support`
 * [m, d] the FCE-encoded support g(x_i) (computed at adaptation, baked in as an initializer),
 * `labels` [m, ways] one-hot, and the query attention LSTM `att_weight_ih` [d, 4d], `att_weight_hh`
 * [2d, 4d], `att_bias` [4d]. Input: query embeddings f'(x) [n, d]; output: log ŷ [n, ways], with
 * ŷ = Σ_i softmax_i(s · cos(f(x, S), g(x_i))) y_i. The attention LSTM (K steps) is part of the
 * exported graph; the read-out is {@link matchingHead}'s.
 */
export function matchingFceHead(opts: { name?: string; ways: number; scale?: number; steps: number }): Layer {
  const name = opts.name ?? 'head';
  const readout = matchingHead({ name: `${name}.readout`, ways: opts.ways, scale: opts.scale });
  const cellOf = (p: Params): LSTMCellParams => {
    const get = (k: string) => {
      const t = p[k];
      if (!t) throw new Error(`${name}: missing parameter '${k}'`);
      return t;
    };
    return { weight_ih: get('att_weight_ih'), weight_hh: get('att_weight_hh'), bias: get('att_bias') };
  };
  const checkShapes = (p: Params, d: number) => {
    const want = attentionCellShapes(d);
    for (const k of CELL_KEYS) {
      const t = p[`att_${k}`];
      if (t && (t.shape.length !== want[k].length || t.shape.some((x, i) => x !== want[k][i]))) {
        throw new Error(`${name}: 'att_${k}' has shape [${t.shape}], expected [${want[k]}] for embeddings of size ${d}`);
      }
    }
    const s = p['support'];
    if (s && (s.rank !== 2 || s.shape[1] !== d)) throw new Error(`${name}: 'support' has shape [${s.shape}], expected [m, ${d}]`);
  };
  return {
    name,
    kind: 'MatchingFceHead',
    outputShape(inputShape: number[]) {
      return readout.outputShape(inputShape);
    },
    init() {
      throw new Error(`${name}: the support memory comes from adaptation (MatchingNet.adapt), not from init`);
    },
    apply(p: Params, x: tf.Tensor, ctx: ApplyContext) {
      const d = x.shape[1]!;
      checkShapes(p, d);
      return tf.tidy(() => {
        const g = p['support'] as tf.Tensor2D;
        const f = fceQueryEmbedding(cellOf(p), x as tf.Tensor2D, g, opts.steps);
        const gn = l2normalize(g);
        return readout.apply({ support: gn, labels: p['labels']! }, f, ctx);
      });
    },
    toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext) {
      readout.outputShape(ctx.shape);
      const d = ctx.shape[0]!;
      checkShapes(p, d);
      const support = p['support'];
      if (!support) throw new Error(`${name}: missing parameter 'support'`);
      const weights = addLSTMCellInitializers(g, `${name}.att`, { weight_ih: cellOf(p).weight_ih, weight_hh: cellOf(p).weight_hh, bias: cellOf(p).bias });
      const gName = g.addInitializer(g.uniqueName(`${name}.support`), support);
      const st = tf.transpose(support);
      const gTName = g.addInitializer(g.uniqueName(`${name}.support_t`), st);
      st.dispose();
      const f = fceQueryOnnx(g, weights, d, input, gName, gTName, opts.steps, name);
      const gn = l2normalize(support as tf.Tensor2D);
      try {
        return readout.toOnnx(g, { support: gn, labels: p['labels']! }, f, ctx);
      } finally {
        gn.dispose();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The learner
// ---------------------------------------------------------------------------------------------

/**
 * Matching Networks (Vinyals et al. 2016): the query label distribution is the
 * softmax-over-cosine-similarity attention over the support embeddings applied to their one-hot
 * labels, ŷ = Σ a(x, x_i) y_i; training minimises −log ŷ_y on the queries. The adapted classifier is
 * the backbone plus a head holding the normalised support embeddings and their labels as constants;
 * it outputs log ŷ.
 *
 * With `fce: true` (full-context embeddings) the support embeddings go through a bidirectional
 * LSTM over the support set ({@link fceSupportEmbedding}) and each query embedding through an
 * attention LSTM over the encoded support for `fceSteps` steps ({@link fceQueryEmbedding}); their
 * parameters (`fce.*`) are trained with the backbone and saved in checkpoints. The adapted
 * classifier bakes in the encoded support g(x_i) and runs the attention LSTM in its graph
 * ({@link matchingFceHead}).
 */
export class MatchingNet extends EmbeddingLearner<MatchingNetConfig> {
  readonly id = 'matchingnet';

  constructor(config: MatchingNetConfig, ctx: LearnerContext) {
    if (config.fce !== undefined && typeof config.fce !== 'boolean') throw new Error(`matchingnet: config 'fce' must be true or false, got ${JSON.stringify(config.fce)}`);
    const steps = config.fceSteps ?? DEFAULT_FCE_STEPS;
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`matchingnet: config 'fceSteps' must be a positive integer, got ${JSON.stringify(config.fceSteps)}`);
    super(config, ctx, 'matchingnet');
  }

  /** full-context embeddings on? */
  get fce(): boolean {
    return this.config.fce === true;
  }

  /** processing steps K of the FCE query attention LSTM */
  get fceSteps(): number {
    return this.config.fceSteps ?? DEFAULT_FCE_STEPS;
  }

  // (optional parameter: EmbeddingLearner declares initHead() without one; the base always passes it)
  protected override initHead(rng?: Rng): Params {
    if (!this.fce) return {};
    if (!rng) throw new Error('matchingnet: initHead needs an rng');
    const d = this.embeddingSize;
    for (const k of Object.keys(this.backbone.paramShapes())) {
      if (k.startsWith(`${FCE_PREFIX}.`)) throw new Error(`matchingnet: backbone parameter '${k}' collides with the FCE parameters (${FCE_PREFIX}.*)`);
    }
    const { fwd, bwd } = supportLSTMs(d);
    const out: Params = {};
    const add = (prefix: string, p: Params) => {
      for (const [k, t] of Object.entries(p)) out[`${prefix}.${k}`] = t;
    };
    add(fwd.name, fwd.init(rng.fork('g_fwd'), [-1, d]));
    add(bwd.name, bwd.init(rng.fork('g_bwd'), [-1, d]));
    add(`${FCE_PREFIX}.att`, initAttentionCell(rng.fork('att'), d));
    return out;
  }

  protected override headShapes(): Record<string, number[]> {
    if (!this.fce) return {};
    const d = this.embeddingSize;
    const { fwd, bwd } = supportLSTMs(d);
    const out: Record<string, number[]> = {};
    for (const l of [fwd, bwd]) for (const [k, s] of Object.entries(l.paramShapes([-1, d]))) out[`${l.name}.${k}`] = s;
    for (const [k, s] of Object.entries(attentionCellShapes(d))) out[`${FCE_PREFIX}.att.${k}`] = s;
    return out;
  }

  protected override checkpointMeta(): Record<string, unknown> {
    return { fce: this.fce, fceSteps: this.fceSteps };
  }

  protected override checkMeta(meta: Record<string, unknown>): void {
    const saved = meta['fce'] === true; // checkpoints from before FCE have no 'fce' (= off)
    if (saved !== this.fce) {
      throw new Error(`matchingnet.load: the checkpoint was trained with fce: ${saved}, this learner has fce: ${this.fce} (set learner.fce to ${saved})`);
    }
  }

  protected override episodeForward(p: Params, ep: Episode, tools: ForwardTools): HeadedEpisodeOutput {
    if (!this.fce) return super.episodeForward(p, ep, tools);
    const ns = ep.support.x.shape[0];
    const emb = tools.embed(tf.concat([ep.support.x, ep.query.x], 0));
    const es = tf.slice(emb, [0, 0], [ns, -1]) as tf.Tensor2D;
    const eq = tf.slice(emb, [ns, 0], [-1, -1]) as tf.Tensor2D;
    // the same head the adapted classifier exports, with the support encoded inside the tape
    const head = matchingFceHead({ ways: ep.ways, scale: this.config.attentionScale, steps: this.fceSteps });
    const state: Params = { support: fceSupportEmbedding(p, es), labels: oneHot(ep.support.y, ep.ways), ...this.attentionParams(p) };
    const logp = head.apply(state, eq, { training: true }) as tf.Tensor2D;
    const loss = tf.neg(tf.mean(tf.sum(tf.mul(oneHot(ep.query.y, ep.ways), logp), 1))) as tf.Scalar;
    return { loss, logits: logp };
  }

  private attentionParams(p: Params): Params {
    const a = local(p, `${FCE_PREFIX}.att`, CELL_KEYS);
    return { att_weight_ih: a['weight_ih']!, att_weight_hh: a['weight_hh']!, att_bias: a['bias']! };
  }

  protected override adaptedHead(p: Params, es: tf.Tensor2D, ys: Int32Array, ways: number): { head: Layer; state: Params } {
    if (!this.fce) return super.adaptedHead(p, es, ys, ways);
    const att = this.attentionParams(p);
    const support = fceSupportEmbedding(p, es);
    const state: Params = { support, labels: oneHot(ys, ways) };
    for (const [k, t] of Object.entries(att)) state[k] = tf.clone(t); // the classifier owns its copy
    return { head: matchingFceHead({ ways, scale: this.config.attentionScale, steps: this.fceSteps }), state };
  }

  protected episodeOutput(es: tf.Tensor2D, ys: Int32Array, ways: number, eq: tf.Tensor2D, yq: Int32Array): EpisodeOutput {
    const logp = matchingLogProbs(eq, l2normalize(es), oneHot(ys, ways), this.config.attentionScale);
    const loss = tf.neg(tf.mean(tf.sum(tf.mul(oneHot(yq, ways), logp), 1))) as tf.Scalar;
    return { loss, logits: logp };
  }

  protected supportHead(es: tf.Tensor2D, ys: Int32Array, ways: number): { head: Layer; state: Params } {
    return {
      head: matchingHead({ ways, scale: this.config.attentionScale }),
      state: { support: l2normalize(es), labels: oneHot(ys, ways) },
    };
  }
}

export const matchingNetFactory: LearnerFactory<MatchingNetConfig> = {
  id: 'matchingnet',
  family: 'metric',
  description: 'Matching Networks (Vinyals et al. 2016): cosine attention over support embeddings, optional full-context embeddings (fce: bi-LSTM support encoder, attention-LSTM query encoder)',
  configSchema: matchingNetConfigSchema,
  create: (config, ctx) => new MatchingNet(config, ctx),
};
