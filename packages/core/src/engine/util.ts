import * as tf from '@tensorflow/tfjs-core';

/** Sum `g` over the axes that were broadcast so that the result has `shape` (reverse of broadcasting). */
export function reduceTo(g: tf.Tensor, shape: readonly number[]): tf.Tensor {
  // always a new tensor: the engine disposes accumulated gradients, so a gradient function must
  // never hand back its `dy` object itself
  if (tf.util.arraysEqual(g.shape, shape as number[])) return tf.reshape(g, shape as number[]);
  // axes of g's shape (leading axes that `shape` lacks included) that were broadcast
  const axes = tf.broadcast_util.getReductionAxes(shape as number[], g.shape);
  // reducing exactly the leading axes (bias / batch-norm parameter gradients): ones @ g as a matmul,
  // far faster than a reduction over leading axes on wasm
  if (axes.length > 0 && axes.every((a, i) => a === i)) {
    // per-channel sums of NHWC maps (bias / batch-norm gradients): pooled, see sumAllButLast
    if (g.rank === 4 && axes.length === 3) return tf.reshape(sumAllButLast(g), shape as number[]);
    return tf.reshape(sumLeading(g, axes.length), shape as number[]);
  }
  const r = axes.length > 0 ? tf.sum(g, axes) : g;
  return tf.reshape(r, shape as number[]);
}

/** Sum over the first `k` axes, as a [1, M] x [M, rest] matmul (differentiable, fast on wasm). */
export function sumLeading(x: tf.Tensor, k: number, scale = 1): tf.Tensor {
  const m = x.shape.slice(0, k).reduce((a, b) => a * b, 1);
  const rest = x.shape.slice(k);
  const cols = rest.reduce((a, b) => a * b, 1);
  const ones = tf.fill([1, m], scale);
  return tf.reshape(tf.matMul(ones as tf.Tensor2D, tf.reshape(x, [m, cols]) as tf.Tensor2D), rest.length ? rest : []);
}

/**
 * Sum (times `scale`) over every axis but the last: [..., C] -> [C]. Rank 3-4 (NHWC maps, [N, L, C]
 * sequences): an average pool over the spatial axes, then a [1, N] x [N, C] matmul. Measured on wasm
 * (75x28x28x64): ~3-7 ms, vs ~30-40 ms for `[1, M] x [M, C]` with a fresh right operand (XNNPACK
 * repacks it on every call) and ~100-180 ms for tf.sum / tf.mean over the leading axes. Rank <= 2: one
 * matmul. Differentiable to any order (AvgPool's and BatchMatMul's gradients are registered).
 */
export function sumAllButLast(x: tf.Tensor, scale = 1): tf.Tensor1D {
  const c = x.shape[x.rank - 1]!;
  if (x.rank === 3 || x.rank === 4) {
    const [n, h, w] = x.rank === 4 ? x.shape : [x.shape[0]!, 1, x.shape[1]!];
    const x4 = (x.rank === 4 ? x : tf.reshape(x, [n!, 1, w!, c])) as tf.Tensor4D;
    if (h! * w! > 1) {
      const pooled = tf.avgPool(x4, [h!, w!], [h!, w!], 'valid'); // [N, 1, 1, C], mean over H, W
      return tf.reshape(tf.matMul(tf.fill([1, n!], scale * h! * w!) as tf.Tensor2D, tf.reshape(pooled, [n!, c]) as tf.Tensor2D), [c]);
    }
    return tf.reshape(sumLeading(x4, 3, scale), [c]);
  }
  if (x.rank <= 1) return tf.reshape(scale === 1 ? x : tf.mul(x, scale), [c]);
  return tf.reshape(sumLeading(x, x.rank - 1, scale), [c]);
}

/** Mean over every axis but the last ([..., C] -> [C]), see {@link sumAllButLast}. */
export function meanAllButLast(x: tf.Tensor): tf.Tensor1D {
  return sumAllButLast(x, (x.shape[x.rank - 1]! / x.size) as number);
}

/** Broadcast `t` (same rank, 1s where broadcast) to `shape` with an add: wasm's Tile is very slow. */
export function expandTo(t: tf.Tensor, shape: readonly number[]): tf.Tensor {
  if (tf.util.arraysEqual(t.shape, shape as number[])) return tf.reshape(t, shape as number[]);
  return tf.add(tf.zeros(shape as number[]), t);
}

/**
 * Pad (positive amounts) or crop (negative amounts) `x` along each axis; `amounts[i] = [before, after]`.
 * Differentiable (pad <-> slice).
 */
export function padOrCrop(x: tf.Tensor, amounts: readonly (readonly [number, number])[], value = 0): tf.Tensor {
  let needCrop = false;
  let needPad = false;
  for (const [a, b] of amounts) {
    if (a < 0 || b < 0) needCrop = true;
    if (a > 0 || b > 0) needPad = true;
  }
  let r = x;
  if (needCrop) {
    const begin = amounts.map(([a]) => Math.max(0, -a));
    const size = amounts.map(([a, b], i) => r.shape[i]! - Math.max(0, -a) - Math.max(0, -b));
    if (size.some((s) => s <= 0)) {
      throw new Error(`engine/util.ts padOrCrop: cropping ${JSON.stringify(amounts)} leaves nothing of shape [${x.shape}]`);
    }
    r = tf.slice(r, begin, size);
  }
  if (needPad) {
    r = tf.pad(r, amounts.map(([a, b]) => [Math.max(0, a), Math.max(0, b)] as [number, number]), value);
  }
  return r;
}

/**
 * Insert `s-1` zeros after every element of axes 1 and 2 of an NHWC tensor ("stride dilation"):
 * [N, H, W, C] -> [N, H*sh, W*sw, C]; element (i, j) lands at (i*sh, j*sw). Built from reshape + pad,
 * so it is differentiable to any order.
 */
export function dilateHW(x: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape;
  const x6 = tf.reshape(x, [n, h, 1, w, 1, c]);
  const p = tf.pad(x6, [
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
    [0, sw - 1],
    [0, 0],
  ]);
  return tf.reshape(p, [n, h * sh, w * sw, c]);
}

export function pair(v: number | readonly number[] | undefined, fallback = 1): [number, number] {
  if (v == null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  if (v.length === 1) return [v[0]!, v[0]!];
  return [v[0]!, v[1]!];
}
