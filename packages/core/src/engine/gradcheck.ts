/**
 * Finite-difference checks of first-order gradients and Hessian-vector products.
 *
 * The checked function maps parameters to an output tensor y. The loss is the smooth
 *   L(y) = sum(c * y) + 0.5 * k * sum(y^2)      (c random, k = 1 / y.size)
 * whose quadratic term gives piecewise-linear nets a non-zero Hessian. The loss is evaluated in
 * float64 on the JS side from float32 forward outputs, so central differences lose little to
 * cancellation. Checks are directional: for random directions u (and v),
 *   first order:  <grad L, u>        vs (L(p + eps u) - L(p - eps u)) / 2 eps
 *   second order: <H v, u>           vs (<grad L(p + eps u), v> - <grad L(p - eps u), v>) / 2 eps
 * where H v comes from differentiating <grad L, v> again (the engine's second-order path).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';

export interface GradCheckOptions {
  rng: Rng;
  /** finite-difference step (default 1e-3) */
  eps?: number;
  /** number of random directions (default 2) */
  directions?: number;
  /** also check Hessian-vector products (default true) */
  secondOrder?: boolean;
}

export interface GradCheckRow {
  order: 1 | 2;
  analytic: number;
  numeric: number;
  /** |analytic - numeric| / max(|analytic|, |numeric|, 1e-6) */
  relErr: number;
}

type Fn = (ps: tf.Tensor[]) => tf.Tensor;

function randomLike(ts: readonly tf.Tensor[], rng: Rng): tf.Tensor[] {
  return ts.map((t) => tf.tensor(rng.normalArray(t.size), t.shape, 'float32'));
}

function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function shift(ps: readonly tf.Tensor[], us: readonly tf.Tensor[], eps: number): tf.Tensor[] {
  return ps.map((p, i) => tf.add(p, tf.mul(us[i]!, eps)));
}

/** Run the finite-difference checks; returns one row per direction and order. */
export function gradCheck(f: Fn, params: tf.Tensor[], opts: GradCheckOptions): GradCheckRow[] {
  const eps = opts.eps ?? 1e-3;
  const nDir = opts.directions ?? 2;
  const second = opts.secondOrder ?? true;
  const rows: GradCheckRow[] = [];
  const ySize = tf.tidy(() => f(params).size);
  const cArr = opts.rng.normalArray(ySize);
  const k = 1 / ySize;
  const c = tf.tensor1d(cArr);
  const lossT = (ps: tf.Tensor[]): tf.Scalar => {
    const y = tf.reshape(f(ps), [-1]);
    return tf.add(tf.sum(tf.mul(c, y)), tf.mul(tf.sum(tf.square(y)), 0.5 * k)) as tf.Scalar;
  };
  const loss64 = (ps: tf.Tensor[]): number => {
    const t = tf.tidy(() => f(ps));
    const y = t.dataSync();
    t.dispose();
    let s = 0;
    for (let i = 0; i < y.length; i++) s += cArr[i]! * y[i]! + 0.5 * k * y[i]! * y[i]!;
    return s;
  };
  const gradOf = (ps: tf.Tensor[]): tf.Tensor[] => tf.grads((...xs: tf.Tensor[]) => lossT(xs))(ps);
  const rel = (a: number, n: number) => Math.abs(a - n) / Math.max(Math.abs(a), Math.abs(n), 1e-6);

  for (let d = 0; d < nDir; d++) {
    const us = randomLike(params, opts.rng);
    // ---- first order
    const g = tf.tidy(() => gradOf(params));
    let analytic = 0;
    g.forEach((gi, i) => (analytic += dot64(gi.dataSync(), us[i]!.dataSync())));
    tf.dispose(g);
    const plus = tf.tidy(() => shift(params, us, eps));
    const minus = tf.tidy(() => shift(params, us, -eps));
    const numeric = (loss64(plus) - loss64(minus)) / (2 * eps);
    rows.push({ order: 1, analytic, numeric, relErr: rel(analytic, numeric) });
    if (second) {
      const vs = randomLike(params, opts.rng);
      const hv = tf.tidy(() =>
        tf.grads((...xs: tf.Tensor[]) => {
          const gs = gradOf(xs);
          return tf.addN(gs.map((gi, i) => tf.sum(tf.mul(gi, vs[i]!)))) as tf.Scalar;
        })(params),
      );
      let a2 = 0;
      hv.forEach((h, i) => (a2 += dot64(h.dataSync(), us[i]!.dataSync())));
      tf.dispose(hv);
      const gv = (ps: tf.Tensor[]): number => {
        const gs = tf.tidy(() => gradOf(ps));
        let s = 0;
        gs.forEach((gi, i) => (s += dot64(gi.dataSync(), vs[i]!.dataSync())));
        tf.dispose(gs);
        return s;
      };
      const n2 = (gv(plus) - gv(minus)) / (2 * eps);
      rows.push({ order: 2, analytic: a2, numeric: n2, relErr: rel(a2, n2) });
      tf.dispose(vs);
    }
    tf.dispose([...plus, ...minus, ...us]);
  }
  c.dispose();
  return rows;
}
