import * as tf from '@tensorflow/tfjs-core';
import type { ApplyContext, ExportContext, Layer, OnnxGraphBuilder, Params } from '@metalearn/core';

/** Distance between query embeddings and class prototypes. */
export type Distance = 'sqeuclidean' | 'cosine';

const NORM_EPS = 1e-12;

/** Row-wise L2 normalisation x / max(‖x‖, eps) (same formula as the ONNX export). */
export function l2normalize(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.sqrt(tf.maximum(tf.sum(tf.square(x), 1, true), NORM_EPS * NORM_EPS))) as tf.Tensor2D);
}

/**
 * Class prototypes: the mean embedding of each class's support examples (Snell et al. 2017, eq. 1).
 * `emb` is [n, d], `y` holds labels 0..ways-1; every class needs at least one example.
 */
export function prototypes(emb: tf.Tensor2D, y: Int32Array, ways: number): tf.Tensor2D {
  if (emb.shape[0] !== y.length) throw new Error(`prototypes: ${emb.shape[0]} embeddings for ${y.length} labels`);
  const counts = new Float32Array(ways);
  for (const c of y) {
    if (c < 0 || c >= ways || !Number.isInteger(c)) throw new Error(`prototypes: label ${c} is outside 0..${ways - 1}`);
    counts[c]! += 1;
  }
  const empty = [...counts].findIndex((c) => c === 0);
  if (empty >= 0) throw new Error(`prototypes: class ${empty} has no support example`);
  return tf.tidy(() => {
    // [ways, n] averaging matrix: A[c, i] = 1/count(c) if y[i] = c
    const a = new Float32Array(ways * y.length);
    y.forEach((c, i) => (a[c * y.length + i] = 1 / counts[c]!));
    return tf.matMul(tf.tensor2d(a, [ways, y.length]), emb);
  });
}

/** One-hot [n, ways] float matrix of the labels. */
export function oneHot(y: Int32Array, ways: number): tf.Tensor2D {
  const a = new Float32Array(y.length * ways);
  y.forEach((c, i) => (a[i * ways + c] = 1));
  return tf.tensor2d(a, [y.length, ways]);
}

/**
 * logits[i, c] for embeddings [n, d] against prototypes [ways, d]:
 * sqeuclidean: −‖x_i − c_k‖² (computed as explicit differences, like the ONNX graph);
 * cosine: scale · cos(x_i, c_k).
 */
export function prototypeLogits(x: tf.Tensor2D, protos: tf.Tensor2D, distance: Distance, scale = 1): tf.Tensor2D {
  return tf.tidy(() => {
    if (distance === 'sqeuclidean') {
      const diff = tf.sub(tf.expandDims(x, 1), tf.expandDims(protos, 0)); // [n, ways, d]
      return tf.neg(tf.sum(tf.square(diff), 2)) as tf.Tensor2D;
    }
    const sim = tf.matMul(l2normalize(x), l2normalize(protos), false, true);
    return (scale === 1 ? sim : tf.mul(sim, scale)) as tf.Tensor2D;
  });
}

/**
 * Matching Networks read-out (Vinyals et al. 2016, eq. 1–2): attention a(x, x_i) = softmax_i cos(x, x_i)
 * over the support embeddings, ŷ = Σ_i a(x, x_i) y_i; returned as log ŷ (log-probabilities, so
 * argmax and cross-entropy work as with logits). `supportNorm` is the L2-normalised support [m, d].
 */
export function matchingLogProbs(x: tf.Tensor2D, supportNorm: tf.Tensor2D, supportOneHot: tf.Tensor2D, scale = 1, eps = 1e-8): tf.Tensor2D {
  return tf.tidy(() => {
    let sim = tf.matMul(l2normalize(x), supportNorm, false, true); // [n, m]
    if (scale !== 1) sim = tf.mul(sim, scale);
    const probs = tf.matMul(tf.softmax(sim, 1), supportOneHot); // [n, ways]
    return tf.log(tf.add(probs, eps)) as tf.Tensor2D;
  });
}

/** ONNX: row-wise L2 normalisation of a [n, d] value (as {@link l2normalize}). */
export function onnxL2Normalize(g: OnnxGraphBuilder, x: string, base: string): string {
  const ss = g.addNode('ReduceSumSquare', [x], { axes: [1], keepdims: 1 }) // opset 17: axes is an attribute;
  const norm = g.addNode('Sqrt', [g.addNode('Max', [ss, g.float(NORM_EPS * NORM_EPS, [], `${base}.eps`)])]);
  return g.addNode('Div', [x, norm]);
}

function flatDim(layerName: string, inputShape: number[]): number {
  if (inputShape.length !== 1) {
    throw new Error(`${layerName}: expects flat embeddings [n, d] (add a Flatten before the head), got per-example shape [${inputShape}]`);
  }
  return inputShape[0]!;
}

/**
 * Head Layer of an adapted Prototypical Network: parameters `{ prototypes: [ways, d] }` (the adapted
 * state, baked into the exported graph as an initializer), input [n, d] embeddings, output logits.
 */
export function prototypeHead(opts: { name?: string; ways: number; distance: Distance; scale?: number }): Layer {
  const name = opts.name ?? 'head';
  const scale = opts.scale ?? 1;
  return {
    name,
    kind: 'PrototypeHead',
    outputShape(inputShape: number[]) {
      flatDim(name, inputShape);
      return [opts.ways];
    },
    init() {
      throw new Error(`${name}: prototypes come from adaptation (ProtoNet.adapt), not from init`);
    },
    apply(p: Params, x: tf.Tensor, _ctx: ApplyContext) {
      return prototypeLogits(x as tf.Tensor2D, p['prototypes'] as tf.Tensor2D, opts.distance, scale);
    },
    toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext) {
      flatDim(name, ctx.shape);
      if (opts.distance === 'sqeuclidean') {
        const protos = g.addInitializer(`${name}.prototypes`, p['prototypes']!);
        const xq = g.addNode('Unsqueeze', [input, g.int64([1], `${name}.unsq_axes`)]); // [n, 1, d]
        const diff = g.addNode('Sub', [xq, protos]); // [n, ways, d]
        const d2 = g.addNode('ReduceSumSquare', [diff], { axes: [2], keepdims: 0 });
        return g.addNode('Neg', [d2]);
      }
      // cosine: the prototypes are normalised in the graph (onnxruntime folds it for constant
      // prototypes), so graph training can use this head with prototypes computed in the graph
      const protos = g.addInitializer(`${name}.prototypes`, p['prototypes']!);
      const protosT = g.addNode('Transpose', [onnxL2Normalize(g, protos, `${name}.prototypes`)], { perm: [1, 0] });
      const sim = g.addNode('MatMul', [onnxL2Normalize(g, input, name), protosT]);
      return scale === 1 ? sim : g.addNode('Mul', [sim, g.float(scale, [], `${name}.scale`)]);
    },
  };
}

/**
 * Head Layer of an adapted Matching Network: parameters `{ support: [m, d] L2-normalised support
 * embeddings, labels: [m, ways] one-hot }`, input [n, d] query embeddings, output log-probabilities.
 */
export function matchingHead(opts: { name?: string; ways: number; scale?: number }): Layer {
  const name = opts.name ?? 'head';
  const scale = opts.scale ?? 1;
  return {
    name,
    kind: 'MatchingHead',
    outputShape(inputShape: number[]) {
      flatDim(name, inputShape);
      return [opts.ways];
    },
    init() {
      throw new Error(`${name}: the support memory comes from adaptation (MatchingNet.adapt), not from init`);
    },
    apply(p: Params, x: tf.Tensor, _ctx: ApplyContext) {
      return matchingLogProbs(x as tf.Tensor2D, p['support'] as tf.Tensor2D, p['labels'] as tf.Tensor2D, scale);
    },
    toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext) {
      flatDim(name, ctx.shape);
      const st = tf.transpose(p['support']!);
      const supportT = g.addInitializer(`${name}.support_t`, st);
      st.dispose();
      const labels = g.addInitializer(`${name}.labels`, p['labels']!);
      let sim = g.addNode('MatMul', [onnxL2Normalize(g, input, name), supportT]);
      if (scale !== 1) sim = g.addNode('Mul', [sim, g.float(scale, [], `${name}.scale`)]);
      const probs = g.addNode('MatMul', [g.addNode('Softmax', [sim], { axis: 1 }), labels]);
      return g.addNode('Log', [g.addNode('Add', [probs, g.float(1e-8, [], `${name}.eps`)])]);
    },
  };
}
