import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@metalearn/core';
import { crossEntropy, finiteDifferenceGaussNewton, gaussNewtonVectorProduct, resolveOptimConfig, hessianVectorProduct, imamlTaskGrad, innerLoop, mse, keysOf, type InnerLoopSpec, type Params } from '../src/index.js';
import { fdGrad, flat, relErr, sineTask, tinyMlp, useCpu } from './helpers.js';

beforeAll(useCpu);

/** Solve A x = b (dense, float64) by Gaussian elimination with partial pivoting. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[piv]![c]!)) piv = r;
    [M[c], M[piv]] = [M[piv]!, M[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k]! -= f * M[c]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r]![n]!;
    for (let k = r + 1; k < n; k++) s -= M[r]![k]! * x[k]!;
    x[r] = s / M[r]![r]!;
  }
  return x;
}

describe('iMAML meta-gradient', () => {
  it('equals the exact implicit gradient (I + H/λ)⁻¹∇L_q from a direct dense solve', () => {
    const net = tinyMlp([1, 4, 1], 'tanh');
    const theta = net.init(new Rng(5));
    const task = sineTask(new Rng(21), 10, 10);
    const lambda = 2;
    const spec: InnerLoopSpec = { net, loss: mse, steps: 30, lr: 0.05 };
    const keys = keysOf(theta);
    const n = Object.values(theta).reduce((s, t) => s + t.size, 0);
    const before = tf.memory().numTensors;
    const r = imamlTaskGrad(spec, theta, task, { lambda, cgSteps: n });
    r.queryOut.dispose();
    // damped CG (cgDamping δ): the same solve with λ + δ in the system (φ still from the λ-proximal inner loop)
    const delta = 10;
    const rd = imamlTaskGrad(spec, theta, task, { lambda, cgSteps: n, cgDamping: delta });
    rd.queryOut.dispose();

    // exact: rebuild φ, the dense Hessian column by column, and solve the system directly
    const phi = innerLoop({ ...spec, proximal: { lambda, anchor: theta } }, theta, task.xs, task.ys, false);
    const gq = tf.tidy(() => tf.grads((...ts: tf.Tensor[]) => mse(net.apply(Object.fromEntries(keys.map((k, i) => [k, ts[i]!])), task.xq, { training: true }), task.yq))(keys.map((k) => phi[k]!)));
    const H: number[][] = [];
    let off = 0;
    for (const k of keys) {
      for (let i = 0; i < theta[k]!.size; i++) {
        const e: Params = {};
        let pos = 0;
        for (const kk of keys) {
          const v = new Float32Array(theta[kk]!.size);
          if (pos + v.length > off + i && pos <= off + i && kk === k) v[i] = 1;
          e[kk] = tf.tensor(v, theta[kk]!.shape);
          pos += v.length;
        }
        const hv = hessianVectorProduct(spec, phi, task.xs, task.ys, e, keys);
        H.push(Array.from(flat(hv, keys)));
        Object.values(e).forEach((t) => t.dispose());
        Object.values(hv).forEach((t) => t.dispose());
      }
      off += theta[k]!.size;
    }
    const A = H.map((row, i) => row.map((h, j) => (i === j ? 1 : 0) + (h + H[j]![i]!) / 2 / lambda));
    const b = Array.from(flat(Object.fromEntries(keys.map((k, i) => [k, gq[i]!])), keys));
    const exact = Float64Array.from(solve(A, b));
    const got = flat(r.grads, keys);
    const err = relErr(got, exact);
    const plainErr = relErr(Float64Array.from(b), exact);
    console.log(`iMAML (CG, ${r.cgIterations} it) vs exact dense solve: relative error ${err.toExponential(2)}; plain ∇L_q vs exact: ${plainErr.toExponential(2)}`);
    expect(err).toBeLessThan(1e-3);
    expect(plainErr).toBeGreaterThan(1e-2); // the linear system matters: the identity would fail
    const Ad = H.map((row, i) => row.map((h, j) => (i === j ? 1 : 0) + (h + H[j]![i]!) / 2 / (lambda + delta)));
    const exactD = Float64Array.from(solve(Ad, b));
    const errD = relErr(flat(rd.grads, keys), exactD);
    console.log(`iMAML damped (δ ${delta}) vs dense solve of (I + H/(λ+δ)): relative error ${errD.toExponential(2)}; vs undamped: ${relErr(exactD, exact).toExponential(2)}`);
    expect(errD).toBeLessThan(1e-3);
    expect(relErr(exactD, exact)).toBeGreaterThan(1e-2);
    Object.values(rd.grads).forEach((t) => t.dispose());

    gq.forEach((t) => t.dispose());
    Object.values(phi).forEach((t) => t.dispose());
    Object.values(r.grads).forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(before);
    Object.values(task).forEach((t) => t.dispose());
    Object.values(theta).forEach((t) => t.dispose());
  });

  it('on a quadratic inner problem solved to convergence, equals finite differences of L_q(φ*(θ))', () => {
    const net = tinyMlp([2, 1]);
    const theta = net.init(new Rng(6));
    const rng = new Rng(7);
    const mk = (m: number) => {
      const x = tf.tensor2d(Float32Array.from({ length: 2 * m }, () => rng.normal()), [m, 2]);
      const y = tf.tensor2d(Float32Array.from({ length: m }, () => rng.normal()), [m, 1]);
      return [x, y] as const;
    };
    const [xs, ys] = mk(6);
    const [xq, yq] = mk(8);
    const task = { xs, ys, xq, yq };
    const lambda = 1;
    const spec: InnerLoopSpec = { net, loss: mse, steps: 300, lr: 0.1 };
    const r = imamlTaskGrad(spec, theta, task, { lambda, cgSteps: 10 });
    r.queryOut.dispose();
    const obj = (p: Params) => {
      const phi = innerLoop({ ...spec, proximal: { lambda, anchor: p } }, p, xs, ys, false);
      const l = tf.tidy(() => mse(net.apply(phi, xq, { training: true }), yq));
      const v = l.dataSync()[0]!;
      l.dispose();
      Object.values(phi).forEach((t) => t.dispose());
      return v;
    };
    const fd = fdGrad(obj, theta, 1e-2);
    const keys = keysOf(theta);
    const err = relErr(flat(r.grads, keys), flat(fd, keys));
    console.log(`iMAML vs finite differences of the converged inner solution: relative error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(5e-3);
  });
});

describe('Gauss-Newton products for iMAML (cgMatrix: gauss-newton)', () => {
  const dot = (a: Params, b: Params, keys: string[]) => keys.reduce((s, k) => s + tf.tidy(() => tf.sum(tf.mul(a[k]!, b[k]!)).dataSync()[0]!), 0);
  const randomLike = (p: Params, rng: Rng): Params => Object.fromEntries(Object.entries(p).map(([k, t]) => [k, tf.tensor(rng.normalArray(t.size), t.shape)]));

  it('equals the Hessian product where the network is linear in its parameters (cross-entropy)', () => {
    const net = tinyMlp([3, 4]);
    const phi = net.init(new Rng(2));
    const rng = new Rng(9);
    const x = tf.tensor2d(rng.normalArray(6 * 3), [6, 3]);
    const y = tf.tensor1d([0, 1, 2, 3, 1, 2], 'int32');
    const spec: InnerLoopSpec = { net, loss: crossEntropy, steps: 0, lr: 0 };
    const keys = keysOf(phi);
    const v = randomLike(phi, rng);
    const gv = flat(gaussNewtonVectorProduct(spec, phi, x, y, v, keys), keys);
    const hv = flat(hessianVectorProduct(spec, phi, x, y, v, keys), keys);
    const e = relErr(gv, hv);
    console.log(`GN vs Hessian product on a linear model: relative error ${e.toExponential(2)}`);
    expect(e).toBeLessThan(1e-4);
  });

  it('matches Jᵀ H_z J v with J v from central differences, and is symmetric positive semi-definite (tanh MLP, MSE)', () => {
    const net = tinyMlp([1, 5, 1], 'tanh');
    const phi = net.init(new Rng(4));
    const task = sineTask(new Rng(8), 10, 1);
    const spec: InnerLoopSpec = { net, loss: mse, steps: 0, lr: 0 };
    const keys = keysOf(phi);
    const rng = new Rng(12);
    const u = randomLike(phi, rng);
    const v = randomLike(phi, rng);
    const gv = gaussNewtonVectorProduct(spec, phi, task.xs, task.ys, v, keys);
    const gu = gaussNewtonVectorProduct(spec, phi, task.xs, task.ys, u, keys);
    // reference: J v by central differences of the outputs, H_z = 2/n I for the mean squared error, then Jᵀ(·) by a vjp
    const eps = 1e-3;
    const shifted = (sgn: number) => net.apply(Object.fromEntries(keys.map((k) => [k, tf.add(phi[k]!, tf.mul(v[k]!, sgn * eps))])), task.xs);
    const jv = tf.div(tf.sub(shifted(1), shifted(-1)), 2 * eps);
    const n = jv.size;
    const ref = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(net.apply(Object.fromEntries(keys.map((k, i) => [k, ts[i]!])), task.xs), tf.mul(jv, 2 / n))) as tf.Scalar)(keys.map((k) => phi[k]!));
    const e = relErr(flat(gv, keys), flat(Object.fromEntries(keys.map((k, i) => [k, ref[i]!])), keys));
    const asym = Math.abs(dot(u, gv, keys) - dot(v, gu, keys)) / Math.abs(dot(u, gv, keys));
    console.log(`GN product vs central differences: relative error ${e.toExponential(2)}; asymmetry ${asym.toExponential(2)}`);
    expect(e).toBeLessThan(1e-3);
    expect(asym).toBeLessThan(1e-4);
    for (const w of [u, v, randomLike(phi, rng)]) expect(dot(w, gaussNewtonVectorProduct(spec, phi, task.xs, task.ys, w, keys), keys)).toBeGreaterThanOrEqual(0);
  });

  it("cgJvp 'finite-difference': products and the CG meta-gradient match the exact Gauss-Newton ones (tanh MLP, cross-entropy)", () => {
    const net = tinyMlp([3, 6, 4], 'tanh');
    const theta = net.init(new Rng(14));
    const rng = new Rng(15);
    const mk = (m: number) => [tf.tensor2d(rng.normalArray(m * 3), [m, 3]), tf.tensor1d(Int32Array.from({ length: m }, (_, i) => i % 4), 'int32')] as const;
    const [xs, ys] = mk(8);
    const [xq, yq] = mk(8);
    const spec: InnerLoopSpec = { net, loss: crossEntropy, steps: 5, lr: 0.1 };
    const keys = keysOf(theta);
    const before = tf.memory().numTensors;
    const v = randomLike(theta, rng);
    const fd = finiteDifferenceGaussNewton(spec, theta, xs, ys, keys);
    const gvFd = fd.product(v);
    const gv = gaussNewtonVectorProduct(spec, theta, xs, ys, v, keys);
    const eProd = relErr(flat(gvFd, keys), flat(gv, keys));
    const zeroV = Object.fromEntries(keys.map((k) => [k, tf.zerosLike(theta[k]!)]));
    const zero = fd.product(zeroV);
    expect(keys.every((k) => tf.tidy(() => tf.max(tf.abs(zero[k]!)).dataSync()[0]) === 0)).toBe(true);
    fd.dispose();
    [gvFd, gv, v, zero, zeroV].forEach((p) => Object.values(p).forEach((t) => t.dispose()));
    const task = { xs, ys, xq, yq };
    const opts = { lambda: 2, cgSteps: 5, cgMatrix: 'gauss-newton' as const };
    const exact = imamlTaskGrad(spec, theta, task, opts);
    const approx = imamlTaskGrad(spec, theta, task, { ...opts, cgJvp: 'finite-difference' });
    const eGrad = relErr(flat(approx.grads, keys), flat(exact.grads, keys));
    // the system matters here: the plain query gradient is far from the CG answer
    const phi = innerLoop({ ...spec, proximal: { lambda: 2, anchor: theta } }, theta, xs, ys, false);
    const gq = tf.tidy(() => tf.grads((...ts: tf.Tensor[]) => crossEntropy(net.apply(Object.fromEntries(keys.map((k, i) => [k, ts[i]!])), xq, { training: true }), yq))(keys.map((k) => phi[k]!)));
    const ePlain = relErr(flat(Object.fromEntries(keys.map((k, i) => [k, gq[i]!])), keys), flat(exact.grads, keys));
    console.log(`finite-difference J v: GN product rel. error ${eProd.toExponential(2)}; CG meta-gradient ${eGrad.toExponential(2)} (plain ∇L_q: ${ePlain.toExponential(2)})`);
    expect(eProd).toBeLessThan(1e-3);
    expect(eGrad).toBeLessThan(1e-3);
    expect(ePlain).toBeGreaterThan(1e-2);
    for (const r of [exact, approx]) {
      r.queryOut.dispose();
      Object.values(r.grads).forEach((t) => t.dispose());
    }
    gq.forEach((t) => t.dispose());
    Object.values(phi).forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(before);
    [xs, ys, xq, yq].forEach((t) => t.dispose());
    Object.values(theta).forEach((t) => t.dispose());
  });

  it("rejects cgJvp 'finite-difference' without Gauss-Newton products", () => {
    expect(() => resolveOptimConfig('imaml', { cgJvp: 'finite-difference' })).toThrow(/cgJvp.*cgMatrix 'gauss-newton'/);
    expect(() => resolveOptimConfig('imaml', { cgJvp: 'forward' as never })).toThrow(/cgJvp.*one of exact, finite-difference/);
    expect(resolveOptimConfig('imaml', { cgMatrix: 'gauss-newton', cgJvp: 'finite-difference' }).fdStep).toBe(1e-4);
    // called directly: the same error, before any tensor is made
    const net = tinyMlp([1, 3, 1], 'tanh');
    const theta = net.init(new Rng(3));
    const task = sineTask(new Rng(4), 5, 5);
    const before = tf.memory().numTensors;
    expect(() => imamlTaskGrad({ net, loss: mse, steps: 2, lr: 0.1 }, theta, task, { lambda: 2, cgSteps: 2, cgJvp: 'finite-difference' })).toThrow(/needs cgMatrix 'gauss-newton'/);
    expect(tf.memory().numTensors).toBe(before);
    Object.values(task).forEach((t) => t.dispose());
    Object.values(theta).forEach((t) => t.dispose());
  });
});
