import * as tf from '@tensorflow/tfjs-core';
import type { Params, Task } from './types.js';
import type { InnerLoopSpec, TaskGradResult } from './maml.js';
import { innerLoop, splitMeta } from './maml.js';
import { disposeParams, dotParams, fromList, keysOf, mapParams, normOf, toList } from './params.js';

/**
 * Hessian-vector product H·v of the (unregularised) support loss at φ, by differentiating
 * <∇L(φ), v> once more (double backward).
 */
export function hessianVectorProduct(spec: InnerLoopSpec, phi: Params, x: tf.Tensor, y: tf.Tensor, v: Params, keys: string[]): Params {
  const ctx = spec.ctx ?? { training: true };
  return tf.tidy(() => {
    const hv = tf.grads((...ts: tf.Tensor[]) => {
      const p = { ...phi, ...fromList(keys, ts) };
      const inner = (...us: tf.Tensor[]) => spec.loss(spec.net.apply({ ...p, ...fromList(keys, us) }, x, ctx), y);
      const g = tf.grads(inner)(ts);
      let s: tf.Tensor = tf.scalar(0);
      keys.forEach((k, i) => (s = tf.add(s, tf.sum(tf.mul(g[i]!, v[k]!)))));
      return s as tf.Scalar;
    })(toList(phi, keys));
    return fromList(keys, hv);
  });
}

/**
 * Generalised Gauss-Newton product G·v = Jᵀ H_z J v of the support loss at φ (J: Jacobian of the
 * network outputs z w.r.t. the adapted parameters, H_z: Hessian of the loss w.r.t. z). For a loss
 * convex in the outputs (cross-entropy on logits, MSE) G is positive semi-definite, so I + G/λ is
 * positive definite and CG is well posed; the Hessian H of a ReLU network is not (its negative
 * curvature makes I + H/λ indefinite). J v comes from differentiating the vector-Jacobian product
 * uᵀJ with respect to u (double backward), H_z (J v) from a double backward in the outputs only.
 */
export function gaussNewtonVectorProduct(spec: InnerLoopSpec, phi: Params, x: tf.Tensor, y: tf.Tensor, v: Params, keys: string[]): Params {
  const ctx = spec.ctx ?? { training: true };
  return tf.tidy(() => {
    const outOf = (ts: tf.Tensor[]) => spec.net.apply({ ...phi, ...fromList(keys, ts) }, x, ctx);
    const z = outOf(toList(phi, keys));
    // J v = d/du <Jᵀu, v> (Jᵀu is linear in u, so any u works; u = 0)
    const jv = tf.grad((u: tf.Tensor) => {
      const jtu = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(outOf(ts), u)) as tf.Scalar)(toList(phi, keys));
      let s: tf.Tensor = tf.scalar(0);
      keys.forEach((k, i) => (s = tf.add(s, tf.sum(tf.mul(jtu[i]!, v[k]!)))));
      return s as tf.Scalar;
    })(tf.zerosLike(z));
    // H_z (J v) = d/dz <∇_z L(z), J v>
    const hjv = tf.grad((zz: tf.Tensor) => tf.sum(tf.mul(tf.grad((w: tf.Tensor) => spec.loss(w, y))(zz), jv)) as tf.Scalar)(z);
    // Jᵀ (H_z J v)
    const g = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(outOf(ts), hjv)) as tf.Scalar)(toList(phi, keys));
    return fromList(keys, g);
  });
}

/**
 * Gauss-Newton products G·v = Jᵀ H_z J v at a fixed φ with J v by central finite differences of two
 * forward passes: J v ≈ (f(φ + h v) − f(φ − h v)) / 2h, h = `relStep`·||φ|| / ||v||. The outputs z
 * = f(φ) (for H_z) and ||φ|| are computed once, so each product costs two forwards plus one
 * forward + backward (Jᵀ w), against the double backward of {@link gaussNewtonVectorProduct}
 * (measured on Conv-4, 5 support images: 27.5 vs 48 ms). The error is O(h²) plus rounding and the
 * kinks of ReLU / max-pool; on a trained Conv-4 the 5-step CG solution with `relStep` 1e-4 stayed
 * within ~1e-2 relative (cosine > 0.9999) of the one with exact products (see packages/optim/README.md).
 * Returns the product function and a disposer for the cached tensors.
 */
export function finiteDifferenceGaussNewton(
  spec: InnerLoopSpec,
  phi: Params,
  x: tf.Tensor,
  y: tf.Tensor,
  keys: string[],
  relStep = 1e-4,
): { product: (v: Params) => Params; dispose: () => void } {
  const ctx = spec.ctx ?? { training: true };
  const z = tf.tidy(() => spec.net.apply(phi, x, ctx));
  const phiNorm = normOf(Object.fromEntries(keys.map((k) => [k, phi[k]!])));
  const product = (v: Params): Params => {
    const vNorm = normOf(Object.fromEntries(keys.map((k) => [k, v[k]!])));
    if (!(vNorm > 0)) return Object.fromEntries(keys.map((k) => [k, tf.zerosLike(v[k]!)]));
    const h = (relStep * Math.max(phiNorm, 1)) / vNorm;
    return tf.tidy(() => {
      const at = (s: number) => spec.net.apply({ ...phi, ...Object.fromEntries(keys.map((k) => [k, tf.add(phi[k]!, tf.mul(v[k]!, s))])) }, x, ctx);
      const jv = tf.div(tf.sub(at(h), at(-h)), 2 * h);
      const hjv = tf.grad((zz: tf.Tensor) => tf.sum(tf.mul(tf.grad((w: tf.Tensor) => spec.loss(w, y))(zz), jv)) as tf.Scalar)(z);
      const g = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(spec.net.apply({ ...phi, ...fromList(keys, ts) }, x, ctx), hjv)) as tf.Scalar)(toList(phi, keys));
      return fromList(keys, g);
    });
  };
  return { product, dispose: () => z.dispose() };
}

export interface CgResult {
  x: Params;
  iterations: number;
  /** final residual norm ||b − A x|| */
  residual: number;
}

/**
 * Conjugate gradient for A x = b with A symmetric positive definite given as a product function.
 * Starts from x = 0; at most `maxIter` iterations, stops when ||r|| ≤ tol·||b||.
 */
export function conjugateGradient(apply: (v: Params) => Params, b: Params, maxIter: number, tol = 1e-10): CgResult {
  let x = mapParams(b, (t) => tf.zerosLike(t));
  let r = mapParams(b, (t) => tf.clone(t));
  let p = mapParams(b, (t) => tf.clone(t));
  let rr = dotNum(r, r);
  const bb = rr;
  let it = 0;
  while (it < maxIter && rr > tol * tol * bb) {
    const Ap = apply(p);
    const pAp = dotNum(p, Ap);
    if (!(pAp > 0)) {
      disposeParams(Ap);
      break; // not positive definite along p (or converged to exact zero)
    }
    const alpha = rr / pAp;
    const nx = mapParams(x, (t, k) => tf.tidy(() => tf.add(t, tf.mul(p[k]!, alpha))));
    const nr = mapParams(r, (t, k) => tf.tidy(() => tf.sub(t, tf.mul(Ap[k]!, alpha))));
    disposeParams(x, r, Ap);
    x = nx;
    r = nr;
    const rrNew = dotNum(r, r);
    const beta = rrNew / rr;
    const np = mapParams(p, (t, k) => tf.tidy(() => tf.add(r[k]!, tf.mul(t, beta))));
    disposeParams(p);
    p = np;
    rr = rrNew;
    it++;
  }
  disposeParams(r, p);
  return { x, iterations: it, residual: Math.sqrt(rr) };
}

function dotNum(a: Params, b: Params): number {
  const t = dotParams(a, b);
  const v = t.dataSync()[0]!;
  t.dispose();
  return v;
}

export interface ImamlOptions {
  /** proximal regularisation strength λ */
  lambda: number;
  /** conjugate-gradient iterations */
  cgSteps: number;
  /**
   * δ ≥ 0: CG solves (I + H/(λ + δ)) g = ∇L_q instead of (I + H/λ) (default 0: the exact implicit
   * gradient). The reference implementation damps with δ = 10 ('lam_damping'): H of a trained
   * network has negative curvature, and once an eigenvalue falls below −λ the system is indefinite
   * and CG's answer is no longer a descent direction.
   */
  cgDamping?: number;
  /**
   * The curvature in the linear system: 'hessian' (default; the exact implicit gradient) or
   * 'gauss-newton' (the positive semi-definite Gauss-Newton matrix of the support loss, see
   * {@link gaussNewtonVectorProduct}).
   */
  cgMatrix?: 'hessian' | 'gauss-newton';
  /**
   * How Gauss-Newton products get J v: 'exact' (default; double backward) or 'finite-difference'
   * (central differences of two forward passes, {@link finiteDifferenceGaussNewton}; ~1.7× faster
   * per product, approximate). Only with `cgMatrix: 'gauss-newton'`.
   */
  cgJvp?: 'exact' | 'finite-difference';
  /** relative finite-difference step for `cgJvp: 'finite-difference'` (default 1e-4) */
  fdStep?: number;
}

export interface ImamlTaskGradResult extends TaskGradResult {
  cgIterations: number;
  cgResidual: number;
}

/**
 * iMAML meta-gradient for one task (Rajeswaran et al. 2019):
 *   φ ≈ argmin_φ L_s(φ) + λ/2·||φ − θ||²   (inner loop, no graph kept)
 *   g = (I + H/λ)⁻¹ ∇_φ L_q(φ),  H = ∇²L_s(φ),  solved by CG with Hessian-vector products
 *   (λ + δ in place of λ with `cgDamping` δ; the Gauss-Newton matrix in place of H with `cgMatrix`).
 * Memory does not depend on the number of inner steps.
 */
export function imamlTaskGrad(spec: InnerLoopSpec, meta: Params, task: Task, opts: ImamlOptions): ImamlTaskGradResult {
  const { net, lrs } = splitMeta(meta);
  if (Object.keys(lrs).length) throw new Error('iMAML does not support learned learning rates');
  // checked before any tensor is made, so a bad option leaks nothing
  if (opts.cgJvp === 'finite-difference' && opts.cgMatrix !== 'gauss-newton') throw new Error("iMAML: cgJvp 'finite-difference' needs cgMatrix 'gauss-newton'");
  const keys = keysOf(spec.adaptKeys ? Object.fromEntries(spec.adaptKeys.map((k) => [k, net[k]!])) : net);
  const proxSpec: InnerLoopSpec = { ...spec, proximal: { lambda: opts.lambda, anchor: net } };
  const phi = innerLoop(proxSpec, net, task.xs, task.ys, false);
  const ctx = spec.ctx ?? { training: true };
  let queryOut: tf.Tensor | null = null;
  const allKeys = keysOf(phi);
  const q = tf.tidy(() =>
    tf.valueAndGrads((...ts: tf.Tensor[]) => {
      const out = spec.net.apply(fromList(allKeys, ts), task.xq, ctx);
      queryOut = tf.keep(tf.clone(out));
      return spec.loss(out, task.yq);
    })(toList(phi, allKeys)),
  );
  const gq = fromList(allKeys, q.grads);
  const b: Params = Object.fromEntries(keys.map((k) => [k, gq[k]!]));
  const fd = opts.cgJvp === 'finite-difference' ? finiteDifferenceGaussNewton(spec, phi, task.xs, task.ys, keys, opts.fdStep) : null;
  const A = (v: Params): Params => {
    const hv = fd ? fd.product(v) : (opts.cgMatrix === 'gauss-newton' ? gaussNewtonVectorProduct : hessianVectorProduct)(spec, phi, task.xs, task.ys, v, keys);
    const out = mapParams(v, (t, k) => tf.tidy(() => tf.add(t, tf.div(hv[k]!, opts.lambda + (opts.cgDamping ?? 0)))));
    disposeParams(hv);
    return out;
  };
  const cg = conjugateGradient(A, b, opts.cgSteps);
  fd?.dispose();
  const grads: Params = {};
  for (const k of allKeys) {
    // non-adapted keys (ANIL-style body) get the plain gradient at φ
    grads[k] = cg.x[k] ?? tf.clone(gq[k]!);
  }
  disposeParams(gq);
  if (spec.steps > 0) for (const k of keys) phi[k]!.dispose();
  const loss = q.value.dataSync()[0]!;
  q.value.dispose();
  return { loss, queryOut: queryOut!, grads, cgIterations: cg.iterations, cgResidual: cg.residual };
}
