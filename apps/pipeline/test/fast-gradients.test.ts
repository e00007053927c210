import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, conv4, initEngine, registerProjectGradients, type Params } from '@metalearn/core';
import { applyFastGradients, fastReduceTo } from '../src/fast-gradients.js';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

/** first- and second-order gradients of a Conv-4 (batch norm, max-pool on odd sizes) loss */
function grads(): { g1: Float32Array[]; g2: Float32Array[] } {
  const model = conv4({ inputShape: [11, 11, 2], filters: 3, blocks: 2 });
  const rng = new Rng(4);
  const params = model.init(rng);
  const state = model.initState();
  const names = Object.keys(params).sort();
  const x = tf.tensor(rng.normalArray(5 * 11 * 11 * 2), [5, 11, 11, 2]);
  const target = tf.tensor(rng.normalArray(5 * 2 * 2 * 3), [5, 12]);
  const loss = (...ws: tf.Tensor[]): tf.Scalar => {
    const p: Params = {};
    names.forEach((k, i) => (p[k] = ws[i]!));
    const e = model.apply(p, x, { training: true, state, updates: {} });
    return tf.mean(tf.square(tf.sub(e, target))) as tf.Scalar;
  };
  const ws = names.map((k) => params[k]!);
  const g1 = tf.grads(loss)(ws).map((t) => t.dataSync() as Float32Array);
  // second order: d/dθ ‖∇θ L‖² (what MAML-style meta-gradients differentiate through)
  const gradNorm = (...w: tf.Tensor[]): tf.Scalar => tf.addN(tf.grads(loss)(w).map((g) => tf.sum(tf.square(g)))) as tf.Scalar;
  const g2 = tf.grads(gradNorm)(ws).map((t) => t.dataSync() as Float32Array);
  return { g1, g2 };
}

function maxRelDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => x.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i]![j]!) / (1e-3 + Math.abs(v))))));
  return m;
}

describe('fast wasm gradients', () => {
  it('fastReduceTo sums broadcast axes like the engine', () => {
    const g = tf.tensor(new Rng(1).normalArray(2 * 3 * 4 * 5), [2, 3, 4, 5]);
    for (const shape of [[5], [1, 1, 1, 5], [4, 5], [3, 1, 5], [1], [2, 1, 1, 1], []]) {
      const want = tf.broadcast_util.getReductionAxes(shape.length ? [...Array(4 - shape.length).fill(1), ...shape] : [1, 1, 1, 1], g.shape);
      const ref = tf.reshape(tf.sum(g, want), shape);
      const got = fastReduceTo(g, shape);
      expect(got.shape).toEqual(shape);
      const d = tf.max(tf.abs(tf.sub(ref, got))).dataSync()[0]!;
      expect(d).toBeLessThan(1e-5);
    }
  });

  it('give the same first- and second-order gradients as the engine through conv + batch norm + max-pool', () => {
    registerProjectGradients(true);
    const ref = grads();
    applyFastGradients();
    const fast = grads();
    expect(maxRelDiff(ref.g1, fast.g1)).toBeLessThan(1e-4);
    expect(maxRelDiff(ref.g2, fast.g2)).toBeLessThan(1e-3);
    expect(ref.g2.some((a) => a.some((v) => v !== 0))).toBe(true);
  });
});
