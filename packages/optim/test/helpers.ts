import * as tf from '@tensorflow/tfjs-core';
import { Rng, initEngine, relativeL2 } from '@metalearn/core';
import type { FunctionalNet, Params, Task } from '../src/index.js';

/** cpu backend (tiny tests only) with the engine's second-order-safe gradients. */
export async function useCpu(): Promise<void> {
  await initEngine({ backend: 'cpu', quiet: true });
}

/** Tiny dense net written as a Layer-compatible functional object (tests only). */
export function tinyMlp(sizes: number[], act: 'tanh' | 'relu' = 'tanh'): FunctionalNet {
  return {
    init(rng: Rng): Params {
      const p: Params = {};
      for (let i = 0; i + 1 < sizes.length; i++) {
        const [a, b] = [sizes[i]!, sizes[i + 1]!];
        const w = new Float32Array(a * b).map(() => rng.normal(0, 1 / Math.sqrt(a)));
        const bb = new Float32Array(b).map(() => rng.normal(0, 0.1));
        p[`l${i}.weight`] = tf.tensor2d(w, [a, b]);
        p[`l${i}.bias`] = tf.tensor1d(bb);
      }
      return p;
    },
    apply(p: Params, x: tf.Tensor): tf.Tensor {
      let h = x as tf.Tensor2D;
      const n = sizes.length - 1;
      for (let i = 0; i < n; i++) {
        h = tf.add(tf.matMul(h, p[`l${i}.weight`] as tf.Tensor2D), p[`l${i}.bias`]!) as tf.Tensor2D;
        if (i + 1 < n) h = (act === 'tanh' ? tf.tanh(h) : tf.relu(h)) as tf.Tensor2D;
      }
      return h;
    },
  };
}

/** A regression task y = A sin(x + φ) with k support and q query points. */
export function sineTask(rng: Rng, k: number, q: number): Task {
  const A = rng.uniform(0.1, 5);
  const ph = rng.uniform(0, Math.PI);
  const mk = (n: number) => {
    const x = Float32Array.from({ length: n }, () => rng.uniform(-5, 5));
    const y = x.map((v) => A * Math.sin(v + ph));
    return [tf.tensor2d(x, [n, 1]), tf.tensor2d(y, [n, 1])] as const;
  };
  const [xs, ys] = mk(k);
  const [xq, yq] = mk(q);
  return { xs, ys, xq, yq };
}

/** Central finite-difference gradient of `obj` w.r.t. every entry of `meta` (perturbing copies). */
export function fdGrad(obj: (p: Params) => number, meta: Params, eps: number): Params {
  const out: Params = {};
  for (const k of Object.keys(meta).sort()) {
    const base = meta[k]!.dataSync().slice() as Float32Array;
    const g = new Float32Array(base.length);
    for (let i = 0; i < base.length; i++) {
      const f = (d: number) => {
        const v = base.slice();
        v[i] = v[i]! + d;
        const t = tf.tensor(v, meta[k]!.shape);
        const r = obj({ ...meta, [k]: t });
        t.dispose();
        return r;
      };
      g[i] = (f(eps) - f(-eps)) / (2 * eps);
    }
    out[k] = tf.tensor(g, meta[k]!.shape);
  }
  return out;
}

export function flat(p: Params, keys = Object.keys(p).sort()): Float64Array {
  const parts = keys.map((k) => Array.from(p[k]!.dataSync()));
  return Float64Array.from(parts.flat());
}

/** ‖a − b‖ / ‖b‖ (core's relativeL2) */
export const relErr = (a: Float64Array, b: Float64Array): number => relativeL2(a, b);
