import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/index.js';
import { Rng } from '../src/rng.js';
import {
  BatchNorm, Conv2d, Dense, Dropout, Flatten, LSTM, MaxPool, ReLU, Sequential,
  conv1dEncoder, conv4, lstmCell, mlp, normalTensor, type Layer, type Params,
} from '../src/nn/index.js';

beforeAll(async () => {
  await initEngine({ quiet: true });
});

const sizeOf = (s: number[]) => s.reduce((a, b) => a * b, 1);
const arr = (t: tf.Tensor) => Array.from(t.dataSync());
const dispose = (p: Params) => tf.dispose(Object.values(p));

describe('shapes and parameters', () => {
  it('Conv-4 on 28x28x1 and 84x84x3', () => {
    const a = conv4({ inputShape: [28, 28, 1] });
    expect(a.outputShape).toEqual([64]);
    expect(a.shapes.map((s) => s.join('x'))).toContain('1x1x64');
    // 4 × (conv 3x3 + bias, bn γ/β): 640 + 128 + 3 × (36928 + 128)
    expect(a.numParams()).toBe(111936);
    expect(a.paramNames().slice(0, 4)).toEqual(['block1.conv.weight', 'block1.conv.bias', 'block1.bn.weight', 'block1.bn.bias']);
    expect(a.stateShapes()['block4.bn.running_var']).toEqual([64]);
    const b = conv4({ inputShape: [84, 84, 3], filters: 32 });
    expect(b.outputShape).toEqual([5 * 5 * 32]);
    expect(b.paramShapes()['block1.conv.weight']).toEqual([3, 3, 3, 32]);
    expect(b.summary()).toMatch(/block4\.pool\s+maxpool\s+\[5, 5, 32\]/);
  });

  it('apply gives the declared output shape (Conv-4, MLP, Conv1d encoder at several lengths, LSTM)', () => {
    const rng = new Rng(1);
    const cases: [Sequential, number[][]][] = [
      [conv4({ inputShape: [28, 28, 1], filters: 4 }), [[2, 28, 28, 1]]],
      [mlp({ inputShape: [1], outputs: 1 }), [[5, 1]]],
      [mlp({ inputShape: [3, 3, 2], hidden: [8], outputs: 4 }), [[2, 3, 3, 2]]],
      [conv1dEncoder({ inputShape: [-1, 3], filters: [4, 6] }), [[2, 5, 3], [2, 40, 3]]],
      [new Sequential([new LSTM({ name: 'l', units: 5, returnSequences: true })], [-1, 2]), [[3, 7, 2]]],
    ];
    for (const [m, inputs] of cases) {
      const p = m.init(rng);
      const st = m.initState();
      for (const s of inputs) {
        const x = normalTensor(rng, s, 1);
        const y = m.apply(p, x, { training: false, state: st });
        const want = [s[0]!, ...m.outputShape.map((d, i) => (d < 0 ? s[i + 1]! : d))];
        expect(y.shape).toEqual(want);
        tf.dispose([x, y]);
      }
      dispose(p);
      dispose(st);
    }
  });

  it('rejects bad models and inputs with clear messages', () => {
    expect(() => new Sequential([new ReLU({ name: 'a' }), new ReLU({ name: 'a' })], [3])).toThrow(/duplicate layer name 'a'/);
    expect(() => new Sequential([new Flatten({ name: 'f' })], [-1, 3])).toThrow(/flatten 'f': needs a static/);
    expect(() => new Sequential([new Conv2d({ name: 'c', filters: 2, kernelSize: 3 })], [5, 3])).toThrow(/conv2d 'c': expects per-example input of rank 3/);
    expect(() => new Sequential([new MaxPool({ name: 'p', poolSize: 4 })], [3, 3, 1])).toThrow(/window 4 does not fit input size 3/);
    expect(() => new Dense({ name: 'd', units: 0 })).toThrow(/'units' must be a positive integer/);
    expect(() => conv4({ inputShape: [28, 28] })).toThrow(/inputShape/);
    const m = mlp({ inputShape: [4], hidden: [3], outputs: 2 });
    const p = m.init(new Rng(0));
    const x = tf.zeros([2, 5]);
    expect(() => m.apply(p, x)).toThrow(/input batch must have shape \[n, 4\], got \[2,5\]/);
    const { ['out.bias']: _gone, ...missing } = p;
    expect(() => m.apply(missing, tf.zeros([2, 4]))).toThrow(/dense 'out': missing parameter 'out.bias'/);
    expect(() => m.checkParams(missing)).toThrow(/missing 'out.bias' \[2\]/);
    expect(() => m.checkParams({ ...p, extra: tf.zeros([1]) })).toThrow(/unexpected 'extra'/);
    m.checkParams(p);
    dispose(p);
    x.dispose();
  });
});

describe('memory', () => {
  it('apply leaves no tensors behind (eval, and training once the updates are disposed)', () => {
    const m = conv4({ inputShape: [12, 12, 1], filters: 3, blocks: 2 }).extend(new Dropout({ name: 'drop', rate: 0.5 }), new Dense({ name: 'head', units: 2 }));
    const p = m.init(new Rng(1));
    let st = m.initState();
    const x = normalTensor(new Rng(2), [4, 12, 12, 1], 1);
    const rng = new Rng(3);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.dispose(m.apply(p, x, { training: false, state: st }));
      const updates: Params = {};
      tf.dispose(m.apply(p, x, { training: true, state: st, updates, rng }));
      expect(Object.keys(updates).sort()).toEqual(Object.keys(st).sort());
      dispose(st);
      st = updates;
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('initialisation', () => {
  it('same seed → same params; different seed → different params', () => {
    const m = conv4({ inputShape: [28, 28, 1], filters: 4 }).extend(new Dense({ name: 'head', units: 5 }));
    const a = m.init(new Rng(42));
    const b = m.init(new Rng(42));
    const c = m.init(new Rng(43));
    for (const k of Object.keys(a)) expect(arr(a[k]!)).toEqual(arr(b[k]!));
    expect(arr(a['block2.conv.weight']!)).not.toEqual(arr(c['block2.conv.weight']!));
    // appending a head does not change the backbone's init
    const d = conv4({ inputShape: [28, 28, 1], filters: 4 }).init(new Rng(42));
    for (const k of Object.keys(d)) expect(arr(d[k]!)).toEqual(arr(a[k]!));
    [a, b, c, d].forEach(dispose);
  });

  it('follows the PyTorch / He / Glorot scales', () => {
    const rng = new Rng(7);
    const fanIn = 3 * 3 * 16;
    const pt = new Conv2d({ name: 'c', filters: 32, kernelSize: 3 }).init(rng, [8, 8, 16]);
    const w = arr(pt.weight!);
    const bound = 1 / Math.sqrt(fanIn);
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.95 * bound);
    expect(Math.max(...arr(pt.bias!).map(Math.abs))).toBeLessThanOrEqual(bound);
    const he = new Dense({ name: 'd', units: 200, init: 'he' }).init(rng, [100]);
    const hw = arr(he.weight!);
    const std = Math.sqrt(hw.reduce((a, v) => a + v * v, 0) / hw.length);
    expect(std).toBeCloseTo(Math.sqrt(2 / 100), 2);
    expect(arr(he.bias!).every((v) => v === 0)).toBe(true);
    const gl = new Dense({ name: 'd', units: 30, init: 'glorot' }).init(rng, [10]);
    expect(Math.max(...arr(gl.weight!).map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 40));
    [pt, he, gl].forEach(dispose);
  });
});

describe('batch norm', () => {
  it('training mode normalises with batch statistics and reports momentum updates', () => {
    const m = new Sequential([new BatchNorm({ name: 'bn', momentum: 0.1 })], [2, 3]);
    const p = m.init(new Rng(0));
    const st = m.initState();
    const rng = new Rng(1);
    const x = normalTensor(rng, [4, 2, 3], 2, 1);
    const updates: Params = {};
    const y = m.apply(p, x, { training: true, state: st, updates });
    const { mean, variance } = tf.moments(y, [0, 1]);
    for (const v of arr(mean)) expect(Math.abs(v)).toBeLessThan(1e-5);
    for (const v of arr(variance)) expect(v).toBeCloseTo(1, 3);
    const bm = tf.moments(x, [0, 1]);
    const n = 8;
    expect(arr(updates['bn.running_mean']!)).toEqual(arr(bm.mean).map((v) => expect.closeTo(0.1 * v, 5)));
    expect(arr(updates['bn.running_var']!)).toEqual(arr(bm.variance).map((v) => expect.closeTo(0.9 + 0.1 * v * (n / (n - 1)), 5)));
    // eval with the updated running statistics differs from batch-stat output
    const ye = m.apply(p, x, { training: false, state: updates });
    expect(Math.max(...arr(tf.abs(tf.sub(ye, y))))).toBeGreaterThan(1e-2);
    expect(() => m.apply(p, x, { training: false })).toThrow(/missing state buffer 'bn.running_mean'.*pass ctx.state/);
    const yb = m.apply(p, x, { training: false, batchStats: true });
    expect(Math.max(...arr(tf.abs(tf.sub(yb, y))))).toBeLessThan(1e-6);
  });

  it('updates survive tf.tidy (they are kept for the caller)', () => {
    const m = new Sequential([new BatchNorm({ name: 'bn' })], [3]);
    const p = m.init(new Rng(0));
    const st = m.initState();
    const updates: Params = {};
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      m.apply(p, tf.ones([4, 3]), { training: true, state: st, updates });
    });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(arr(updates['bn.running_var']!)).toEqual([0.9, 0.9, 0.9].map((v) => expect.closeTo(v, 6)));
  });
});

describe('dropout', () => {
  it('is seeded, scales kept units, and is the identity in eval', () => {
    const d = new Sequential([new Dropout({ name: 'drop', rate: 0.25 })], [400]);
    const x = tf.ones([5, 400]);
    const a = arr(d.apply({}, x, { training: true, rng: new Rng(9) }));
    const b = arr(d.apply({}, x, { training: true, rng: new Rng(9) }));
    const c = arr(d.apply({}, x, { training: true, rng: new Rng(10) }));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const zeros = a.filter((v) => v === 0).length / a.length;
    expect(zeros).toBeGreaterThan(0.2);
    expect(zeros).toBeLessThan(0.3);
    expect(a.filter((v) => v !== 0).every((v) => Math.abs(v - 4 / 3) < 1e-6)).toBe(true);
    expect(arr(d.apply({}, x, { training: false }))).toEqual(arr(x));
    expect(() => d.apply({}, x, { training: true })).toThrow(/needs ctx.rng/);
  });
});

describe('LSTM', () => {
  it('lstmCell matches a scalar reference implementation', () => {
    const rng = new Rng(3);
    const [n, f, u] = [2, 3, 4];
    const p = { weight_ih: normalTensor(rng, [f, 4 * u], 0.5), weight_hh: normalTensor(rng, [u, 4 * u], 0.5), bias: normalTensor(rng, [4 * u], 0.5) };
    const x = normalTensor(rng, [n, f], 1) as tf.Tensor2D;
    const h = normalTensor(rng, [n, u], 1) as tf.Tensor2D;
    const c = normalTensor(rng, [n, u], 1) as tf.Tensor2D;
    const out = lstmCell(p, x, { h, c });
    const W = arr(p.weight_ih), U = arr(p.weight_hh), B = arr(p.bias), X = arr(x), H = arr(h), C = arr(c);
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const hRef: number[] = [], cRef: number[] = [];
    for (let i = 0; i < n; i++) {
      const z = Array.from({ length: 4 * u }, (_, j) => {
        let s = B[j]!;
        for (let k = 0; k < f; k++) s += X[i * f + k]! * W[k * 4 * u + j]!;
        for (let k = 0; k < u; k++) s += H[i * u + k]! * U[k * 4 * u + j]!;
        return s;
      });
      for (let j = 0; j < u; j++) {
        const cn = sig(z[u + j]!) * C[i * u + j]! + sig(z[j]!) * Math.tanh(z[2 * u + j]!);
        cRef.push(cn);
        hRef.push(sig(z[3 * u + j]!) * Math.tanh(cn));
      }
    }
    arr(out.h).forEach((v, i) => expect(v).toBeCloseTo(hRef[i]!, 5));
    arr(out.c).forEach((v, i) => expect(v).toBeCloseTo(cRef[i]!, 5));
  });

  it('the sequence layer\'s last state equals the last step of the full sequence', () => {
    const rng = new Rng(4);
    const seq = new Sequential([new LSTM({ name: 'l', units: 6, returnSequences: true })], [-1, 3]);
    const last = new Sequential([new LSTM({ name: 'l', units: 6 })], [-1, 3]);
    const p = seq.init(rng);
    const x = normalTensor(rng, [2, 5, 3], 1);
    const ys = seq.apply(p, x);
    const yl = last.apply(p, x);
    expect(ys.shape).toEqual([2, 5, 6]);
    const tail = tf.squeeze(tf.slice(ys, [0, 4, 0], [2, 1, 6]), [1]);
    arr(yl).forEach((v, i) => expect(v).toBeCloseTo(arr(tail)[i]!, 6));
  });
});

// ---------------------------------------------------------------------------------------------
// differentiability (engine gradients): first and second order vs finite differences

/**
 * Central difference of f along v. ReLU and max-pool make f piecewise smooth, so a step can cross a
 * kink and spoil one estimate: take the median over three step sizes.
 */
function directional(f: (p: Params) => tf.Scalar, p: Params, v: Params): number {
  const est = [3e-4, 1e-4, 3e-5].map((eps) => {
    const shift = (s: number) => Object.fromEntries(Object.keys(p).map((k) => [k, tf.add(p[k]!, tf.mul(v[k]!, s))]));
    const pp = shift(eps);
    const pm = shift(-eps);
    const d = (f(pp).dataSync()[0]! - f(pm).dataSync()[0]!) / (2 * eps);
    dispose(pp);
    dispose(pm);
    return d;
  });
  return est.sort((a, b) => a - b)[1]!;
}

function dot(g: Params, v: Params): number {
  let s = 0;
  for (const k of Object.keys(v)) s += tf.sum(tf.mul(g[k]!, v[k]!)).dataSync()[0]!;
  return s;
}

/** x / √(1 + x²), smooth; built from ops whose gradients are written on their inputs */
class Isru implements Layer {
  readonly kind = 'isru';
  constructor(readonly name: string) {}
  outputShape(s: number[]) {
    return s;
  }
  init() {
    return {};
  }
  apply(_p: Params, x: tf.Tensor) {
    return tf.mul(x, tf.pow(tf.add(tf.square(x), 1), -0.5));
  }
  toOnnx(): string {
    throw new Error('test layer');
  }
}

const asParams = (keys: string[], ts: tf.Tensor[]): Params => Object.fromEntries(keys.map((k, i) => [k, ts[i]!]));

/** F(p) = L_q(p − α ∇L_s(p)) (one MAML inner step) and its gradient via nested tf.grads */
function mamlPieces(loss: (p: Params, inp: tf.Tensor) => tf.Scalar, keys: string[], xs: tf.Tensor, xq: tf.Tensor, alpha: number) {
  const inner = (ts: tf.Tensor[]) => {
    const gs = tf.grads((...u: tf.Tensor[]) => loss(asParams(keys, u), xs))(ts);
    return asParams(keys, ts.map((t, i) => tf.sub(t, tf.mul(gs[i]!, alpha))));
  };
  const F = (p: Params) => tf.tidy(() => loss(inner(keys.map((k) => p[k]!)), xq));
  const grad = (p: Params) => asParams(keys, tf.grads((...ts: tf.Tensor[]) => loss(inner(ts), xq))(keys.map((k) => p[k]!)));
  const firstOrder = (p: Params) =>
    tf.tidy(() => {
      const adapted = inner(keys.map((k) => p[k]!));
      return asParams(keys, tf.grads((...u: tf.Tensor[]) => loss(asParams(keys, u), xq))(keys.map((k) => adapted[k]!)));
    });
  return { F, grad, firstOrder };
}

describe('apply is differentiable with respect to params (engine gradients)', () => {
  const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3);
  // squared error rather than softmax cross-entropy: these tests check the layers; the loss's own
  // second-order gradient (exp / softmax) is the engine's concern
  const mse = (m: Sequential) => (p: Params, inp: tf.Tensor) => tf.tidy(() => tf.mean(tf.square(tf.sub(m.apply(p, inp, { training: true }), labels))) as tf.Scalar);
  const randomDirection = (rng: Rng, p: Params): Params => Object.fromEntries(Object.keys(p).map((k) => [k, normalTensor(rng, [...p[k]!.shape], 1)]));

  it('first order: tf.grads through Conv-4 (conv, batch-stat BN, ReLU, max-pool, dense) matches finite differences', () => {
    const model = conv4({ inputShape: [16, 16, 1], filters: 4, trackRunningStats: false }).extend(new Dense({ name: 'head', units: 3 }));
    const rng = new Rng(5);
    const params = model.init(rng);
    const keys = Object.keys(params);
    const x = normalTensor(rng, [6, 16, 16, 1], 1);
    const f = (p: Params) => mse(model)(p, x);
    const grads = tf.grads((...ts: tf.Tensor[]) => f(asParams(keys, ts)))(keys.map((k) => params[k]!));
    expect(grads.map((t) => t.shape)).toEqual(keys.map((k) => params[k]!.shape));
    const v = randomDirection(rng, params);
    const analytic = dot(asParams(keys, grads), v);
    const numeric = directional(f, params, v);
    expect(Math.abs(analytic - numeric)).toBeLessThan(2e-2 * Math.max(1, Math.abs(numeric)));
  });

  it('second order: the MAML outer gradient through a smooth conv/BN/max-pool/dense net matches finite differences', () => {
    // smooth activation so that F = L_q(p − α∇L_s(p)) is smooth enough for finite differences (with
    // ReLU, ∇L_s jumps at kinks and so does F)
    const model = new Sequential(
      [
        new Conv2d({ name: 'c1', filters: 4, kernelSize: 3 }),
        new BatchNorm({ name: 'bn1', trackRunningStats: false }),
        new Isru('a1'),
        new MaxPool({ name: 'p1' }),
        new Conv2d({ name: 'c2', filters: 4, kernelSize: 3, strides: 2 }),
        new BatchNorm({ name: 'bn2', trackRunningStats: false }),
        new Isru('a2'),
        new Flatten({ name: 'f' }),
        new Dense({ name: 'head', units: 3 }),
      ],
      [8, 8, 1],
    );
    const rng = new Rng(8);
    const params = model.init(rng);
    const keys = Object.keys(params);
    const xs = normalTensor(rng, [6, 8, 8, 1], 1);
    const xq = normalTensor(rng, [6, 8, 8, 1], 1);
    const { F, grad, firstOrder } = mamlPieces(mse(model), keys, xs, xq, 0.5);
    const v = randomDirection(rng, params);
    const analytic = dot(grad(params), v);
    const numeric = directional(F, params, v);
    expect(Math.abs(analytic - numeric)).toBeLessThan(1e-2 * Math.max(1, Math.abs(numeric)));
    // first-order MAML (no Hessian term) is measurably different, so this comparison can fail
    const fo = dot(firstOrder(params), v);
    expect(Math.abs(fo - numeric)).toBeGreaterThan(10 * Math.abs(analytic - numeric));
  });

  it('second order through the real Conv-4 (ReLU, max-pool) runs and adds a Hessian term', () => {
    const model = conv4({ inputShape: [16, 16, 1], filters: 4, trackRunningStats: false }).extend(new Dense({ name: 'head', units: 3 }));
    const rng = new Rng(9);
    const params = model.init(rng);
    const keys = Object.keys(params);
    const { grad, firstOrder } = mamlPieces(mse(model), keys, normalTensor(rng, [6, 16, 16, 1], 1), normalTensor(rng, [6, 16, 16, 1], 1), 0.4);
    const g2 = grad(params);
    const g1 = firstOrder(params);
    let diff = 0;
    for (const k of keys) {
      const d = arr(tf.sub(g2[k]!, g1[k]!));
      expect(d.every(Number.isFinite)).toBe(true);
      diff = Math.max(diff, ...d.map(Math.abs));
    }
    expect(diff).toBeGreaterThan(1e-4);
  });

  it('LSTM and Conv1d encoder are differentiable too (first order)', () => {
    const m = conv1dEncoder({ inputShape: [-1, 2], filters: [4, 4] }).extend(new Dense({ name: 'head', units: 3 }));
    const seq = new Sequential([new LSTM({ name: 'l', units: 4 }), new Dense({ name: 'head', units: 3 })], [-1, 2]);
    for (const mm of [m, seq]) {
      const r = new Rng(6);
      const p = mm.init(r);
      const ks = Object.keys(p);
      const xs = normalTensor(r, [6, 7, 2], 1);
      const f = (pp: Params) => mse(mm)(pp, xs);
      const gs = tf.grads((...ts: tf.Tensor[]) => f(asParams(ks, ts)))(ks.map((k) => p[k]!));
      const vv = randomDirection(r, p);
      const analytic = dot(asParams(ks, gs), vv);
      const numeric = directional(f, p, vv);
      expect(Math.abs(analytic - numeric)).toBeLessThan(2e-2 * Math.max(1, Math.abs(numeric)));
    }
  });
});
