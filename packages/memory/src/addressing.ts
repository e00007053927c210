/**
 * Memory addressing of the Memory-Augmented Neural Network (Santoro et al. 2016), batched:
 * memory [B, N, M] (N slots of width M), R heads, usage [B, N].
 * All functions are pure tfjs ops (differentiable where the paper's model is: the least-used
 * indicators are piecewise constant, as in the paper).
 */
import * as tf from '@tensorflow/tfjs-core';

export const COSINE_EPS = 1e-8;

/** Cosine similarity of keys [B, R, M] with every memory row [B, N, M] -> [B, R, N]. */
export function cosineSimilarity(keys: tf.Tensor3D, memory: tf.Tensor3D): tf.Tensor3D {
  const dot = tf.matMul(keys, memory, false, true); // [B,R,N]
  const kn = tf.sqrt(tf.add(tf.sum(tf.square(keys), 2, true), COSINE_EPS)); // [B,R,1]
  const mn = tf.sqrt(tf.add(tf.sum(tf.square(memory), 2), COSINE_EPS)); // [B,N]
  const denom = tf.mul(kn, tf.expandDims(mn, 1)); // [B,R,N]
  return tf.div(dot, denom) as tf.Tensor3D;
}

/** Content read weights: softmax over slots of (strength · cosine). strength [B, R] or undefined (=1). */
export function contentWeights(keys: tf.Tensor3D, memory: tf.Tensor3D, strength?: tf.Tensor2D): tf.Tensor3D {
  let sim = cosineSimilarity(keys, memory);
  if (strength) sim = tf.mul(sim, tf.expandDims(strength, 2));
  return tf.softmax(sim, -1) as tf.Tensor3D;
}

/**
 * Least-used slots: one-hot rows [B, n, N], row r marking the slot with the (r+1)-th smallest usage
 * (ties go to the lower slot index, as topk orders them). Santoro's w^lu (eq. 8) is the sum of these
 * rows; keeping them apart lets head r write to the r-th least-used slot, so heads never write the
 * same key into tied slots (with a shared indicator all heads fill the same slots with identical
 * rows, and exact ties in usage then persist).
 */
export function leastUsed(usage: tf.Tensor2D, n: number): tf.Tensor3D {
  const [B, N] = usage.shape;
  if (!Number.isInteger(n) || n < 1 || n > N) throw new RangeError(`leastUsed: n must be an integer in [1, ${N}], got ${n}`);
  // piecewise constant in `usage` (no gradient flows through it): the ranking is read back and the
  // one-hots built here, which is much cheaper than TopK + a broadcast comparison as tensor ops
  const u = usage.dataSync();
  const out = new Float32Array(B * n * N);
  const taken = new Uint8Array(N);
  for (let b = 0; b < B; b++) {
    taken.fill(0);
    const base = b * N;
    for (let r = 0; r < n; r++) {
      let best = -1;
      for (let i = 0; i < N; i++) if (!taken[i] && (best < 0 || u[base + i]! < u[base + best]!)) best = i;
      taken[best] = 1;
      out[(b * n + r) * N + best] = 1;
    }
  }
  return tf.tensor3d(out, [B, n, N]);
}

/** LRUA write weights σ(α)·w^r_{t-1} + (1-σ(α))·w^lu_{t-1}, per head. alphaLogit [B,R], prevRead [B,R,N], lu [B,R,N]. */
export function lruaWriteWeights(alphaLogit: tf.Tensor2D, prevRead: tf.Tensor3D, prevLeastUsed: tf.Tensor3D): tf.Tensor3D {
  const g = tf.expandDims(tf.sigmoid(alphaLogit), 2); // [B,R,1]
  return tf.add(tf.mul(g, prevRead), tf.mul(tf.sub(1, g), prevLeastUsed)) as tf.Tensor3D;
}

/**
 * Memory write: the least-used slot of w^u_{t-1} (`erase`, one-hot [B,N]) is zeroed, then
 * M_t(i) = M_{t-1}(i) + Σ_r w^w_r(i) · v_r. memory [B,N,M], writeW [B,R,N], values [B,R,M].
 */
export function writeMemory(memory: tf.Tensor3D, erase: tf.Tensor2D, writeW: tf.Tensor3D, values: tf.Tensor3D): tf.Tensor3D {
  const kept = tf.mul(memory, tf.expandDims(tf.sub(1, erase), 2));
  return tf.add(kept, tf.matMul(writeW, values, true, false)) as tf.Tensor3D;
}

/** Read vectors Σ_i w^r(i) M(i): readW [B,R,N], memory [B,N,M] -> [B,R,M]. */
export function readMemory(readW: tf.Tensor3D, memory: tf.Tensor3D): tf.Tensor3D {
  return tf.matMul(readW, memory) as tf.Tensor3D;
}

/** Usage update w^u_t = γ w^u_{t-1} + Σ_r w^r_r + Σ_r w^w_r. */
export function updateUsage(prevUsage: tf.Tensor2D, readW: tf.Tensor3D, writeW: tf.Tensor3D, gamma: number): tf.Tensor2D {
  return tf.add(tf.mul(prevUsage, gamma), tf.add(tf.sum(readW, 1), tf.sum(writeW, 1))) as tf.Tensor2D;
}

/**
 * Float one-hot rows [n, depth] of integer indices (tensor or array), built from comparisons:
 * tfjs-backend-wasm's OneHot kernel ignores the dtype argument and returns int32 bits labelled float32.
 */
export function oneHotF(indices: tf.Tensor | ArrayLike<number>, depth: number): tf.Tensor {
  if (!(indices instanceof tf.Tensor)) {
    const n = indices.length;
    const out = new Float32Array(n * depth);
    for (let i = 0; i < n; i++) {
      const k = indices[i]!;
      if (!Number.isInteger(k) || k < 0 || k >= depth) throw new RangeError(`oneHotF: index ${k} outside 0..${depth - 1}`);
      out[i * depth + k] = 1;
    }
    return tf.tensor2d(out, [n, depth]);
  }
  return tf.cast(tf.equal(tf.expandDims(tf.cast(indices, 'int32'), -1), tf.range(0, depth, 1, 'int32')), 'float32');
}
