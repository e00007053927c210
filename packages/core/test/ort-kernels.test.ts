/**
 * onnxruntime-backed wasm kernels (engine/ort-kernels.ts): Conv2D, BatchMatMul and Equal give the wasm
 * kernels' results (float32 rounding) on every geometry the engine produces, fall back to wasm where
 * the plan says so, are deterministic (same call → same bits; 1 vs 2 onnxruntime threads → same bits),
 * and the switch restores the original kernels. Gradients through them (first and second order) are
 * covered by grad.test.ts / engine.test.ts, which run with the kernels installed by initEngine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../src/rng.js';
import { initEngine, installOrtKernels, ortConvPlan, ortKernelInfo, ortMatMulPlan, ORT_ELEMENTWISE_MIN_SIZE } from '../src/engine/index.js';

/** calls of a kernel so far: [in onnxruntime, on wasm] */
const calls = (name: string): [number, number] => {
  const c = ortKernelInfo().calls[name];
  return [c?.ort ?? 0, c?.wasm ?? 0];
};

const rng = new Rng(7);
const randn = (shape: number[]): tf.Tensor => tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1)), shape);

/** max |a − b| / max(1, max |b|) */
function relDiff(a: Float32Array | Uint8Array | Int32Array, b: Float32Array | Uint8Array | Int32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let s = 1;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return m / s;
}

/** Run `f` with the onnxruntime kernels on and with the wasm kernels; returns both outputs. */
function both(f: () => tf.Tensor): { ort: Float32Array; wasm: Float32Array; shape: number[] } {
  installOrtKernels(true);
  const a = f();
  const ort = a.dataSync() as Float32Array;
  installOrtKernels(false);
  const b = f();
  const wasm = b.dataSync() as Float32Array;
  installOrtKernels(true);
  expect(a.shape).toEqual(b.shape);
  const shape = a.shape;
  tf.dispose([a, b]);
  return { ort, wasm, shape };
}

describe('onnxruntime kernels on wasm', () => {
  beforeAll(async () => {
    const info = await initEngine({ backend: 'wasm', quiet: true });
    expect(info.backend).toBe('wasm');
    expect(installOrtKernels(true)).toBe(true);
  });
  afterAll(() => {
    installOrtKernels(true);
  });

  it('initEngine reports the onnxruntime convolutions', async () => {
    const info = await initEngine({ quiet: true });
    expect(info.ortConvThreads).toBeGreaterThanOrEqual(1);
    expect(ortKernelInfo().active).toBe(true);
  });

  it('Conv2D equals the wasm kernel on strides, dilations, paddings, 1x1 and the gradient-shaped convolutions', () => {
    const cases: { x: number[]; f: number[]; s: number | [number, number]; p: 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]]; d?: number }[] = [
      { x: [8, 28, 28, 1], f: [3, 3, 1, 16], s: 1, p: 'same' },
      { x: [6, 14, 14, 16], f: [3, 3, 16, 16], s: 1, p: 'same' },
      { x: [4, 9, 9, 3], f: [3, 3, 3, 8], s: 2, p: 'valid' },
      { x: [3, 10, 11, 4], f: [3, 2, 4, 5], s: [2, 1], p: 'same' },
      { x: [2, 12, 12, 3], f: [3, 3, 3, 4], s: 1, p: 'valid', d: 2 },
      { x: [2, 8, 8, 5], f: [1, 1, 5, 7], s: 1, p: 'valid' },
      { x: [2, 7, 7, 4], f: [3, 3, 4, 6], s: 1, p: [[0, 0], [2, 0], [1, 2], [0, 0]] },
      { x: [2, 7, 9, 4], f: [3, 3, 4, 6], s: 1, p: 1 },
      // dW form: channels as batch, dy as the filter (kernel larger than the 3x3 output: im2col form)
      { x: [16, 9, 9, 6], f: [7, 7, 6, 16], s: 1, p: 'valid' },
      { x: [16, 7, 7, 6], f: [7, 7, 6, 16], s: 1, p: [[0, 0], [1, 1], [1, 1], [0, 0]] },
      // swapped-role dx form: batch 1, 12x12 filter, 3x3 output
      { x: [1, 14, 14, 5], f: [12, 12, 5, 4], s: 1, p: 'valid' },
    ];
    for (const c of cases) {
      expect(ortConvPlan(c.x, c.f, { strides: c.s, pad: c.p, dilations: c.d ?? 1, dataFormat: 'NHWC' }), JSON.stringify(c)).not.toBeNull();
      const x = randn(c.x) as tf.Tensor4D;
      const f = randn(c.f) as tf.Tensor4D;
      const before = calls('Conv2D')[0];
      const r = both(() => tf.conv2d(x, f, c.s, c.p as 'same', 'NHWC', c.d ?? 1));
      expect(calls('Conv2D')[0], JSON.stringify(c)).toBe(before + 1);
      expect(relDiff(r.ort, r.wasm), JSON.stringify(c)).toBeLessThan(1e-5);
      tf.dispose([x, f]);
    }
  });

  it('Conv2D picks the im2col form for filters larger than the output, and stays on wasm for such filters with dilation', () => {
    expect(ortConvPlan([16, 9, 9, 6], [7, 7, 6, 16], { strides: 1, pad: 'valid', dilations: 1 })?.form).toBe('im2col');
    expect(ortConvPlan([8, 14, 14, 16], [3, 3, 16, 16], { strides: 1, pad: 'same', dilations: 1 })?.form).toBe('conv');
    const xs = [1, 24, 24, 4];
    const fs = [10, 10, 4, 3];
    expect(ortConvPlan(xs, fs, { strides: 1, pad: 'valid', dilations: 2, dataFormat: 'NHWC' })).toBeNull();
    const x = randn(xs) as tf.Tensor4D;
    const f = randn(fs) as tf.Tensor4D;
    const before = calls('Conv2D');
    const y = tf.conv2d(x, f, 1, 'valid', 'NHWC', 2);
    y.dataSync();
    expect(calls('Conv2D')).toEqual([before[0], before[1] + 1]);
    tf.dispose([x, f, y]);
  });

  it('BatchMatMul equals the wasm kernel (2-D and batched, transposes, batch broadcast); small products stay on wasm', () => {
    const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
      { a: [9, 4000], b: [4000, 64], ta: false, tb: false },
      { a: [300, 70], b: [300, 64], ta: true, tb: false },
      { a: [64, 300], b: [70, 300], ta: false, tb: true },
      { a: [3, 120, 50], b: [3, 50, 80], ta: false, tb: false },
      { a: [1, 120, 50], b: [4, 80, 50], ta: false, tb: true },
      // MANN's small products: transposed A, batched with transposed B
      { a: [4, 200], b: [4, 328], ta: true, tb: false },
      { a: [4, 4, 40], b: [4, 128, 40], ta: false, tb: true },
      { a: [4, 4, 128], b: [4, 4, 40], ta: true, tb: false },
    ];
    for (const c of cases) {
      expect(ortMatMulPlan(c.a, c.b, c.ta, c.tb), JSON.stringify(c)).not.toBeNull();
      const a = randn(c.a);
      const b = randn(c.b);
      const before = calls('BatchMatMul')[0];
      const r = both(() => tf.matMul(a, b, c.ta, c.tb));
      expect(calls('BatchMatMul')[0], JSON.stringify(c)).toBe(before + 1);
      expect(relDiff(r.ort, r.wasm), JSON.stringify(c)).toBeLessThan(1e-5);
      tf.dispose([a, b]);
    }
    expect(ortMatMulPlan([1, 80], [80, 64], false, false)).toBeNull();
    expect(ortMatMulPlan([2, 3, 4, 5], [2, 3, 5, 4], false, false)).toBeNull();
    // transposed or batched products go from ORT_MATMUL_SLOW_MIN_MACS (2^15) on, plain 2-D ones from 2^20
    expect(ortMatMulPlan([4, 200], [4, 328], true, false)).not.toBeNull();
    expect(ortMatMulPlan([4, 4, 40], [4, 128, 40], false, true)).not.toBeNull();
    expect(ortMatMulPlan([4, 200], [200, 328], false, false)).toBeNull();
    expect(ortMatMulPlan([5, 64], [75, 64], false, true)).toBeNull();
  });

  it('Equal (with broadcasting, exact ties) equals the wasm kernel; small or int32 comparisons stay on wasm', () => {
    // the max-pool masks compare a map with its upsampled max
    const x = randn([16, 16, 16, 32]);
    const small = randn([16, 8, 8, 32]) as tf.Tensor4D;
    const up = tf.image.resizeNearestNeighbor(small, [16, 16]);
    const xe = tf.where(tf.greater(x, 0), up, x);
    const row = tf.slice(xe, [0, 0, 0, 0], [16, 1, 16, 32]);
    for (const [a, b] of [[xe, up], [xe, row]] as [tf.Tensor, tf.Tensor][]) {
      const before = calls('Equal')[0];
      installOrtKernels(true);
      const e1 = tf.equal(a, b);
      installOrtKernels(false);
      const e2 = tf.equal(a, b);
      installOrtKernels(true);
      expect(e1.dtype).toBe('bool');
      expect(calls('Equal')[0]).toBe(before + 1);
      expect(Array.from(e1.dataSync())).toEqual(Array.from(e2.dataSync()));
      expect(tf.sum(tf.cast(e1, 'int32')).dataSync()[0]).toBeGreaterThan(0);
      tf.dispose([e1, e2]);
    }
    const tiny = randn([4, 4, 4]);
    const ints = tf.ones([ORT_ELEMENTWISE_MIN_SIZE], 'int32');
    const before = calls('Equal');
    tf.equal(tiny, tiny).dataSync();
    tf.equal(ints, ints).dataSync();
    expect(calls('Equal')).toEqual([before[0], before[1] + 2]);
    tf.dispose([x, small, up, xe, row, tiny, ints]);
  });

  it('is deterministic: same call → same bits, and 1 vs 2 onnxruntime threads → same bits', () => {
    const x = randn([20, 14, 14, 32]) as tf.Tensor4D;
    const f = randn([3, 3, 32, 32]) as tf.Tensor4D;
    const a = randn([64, 3000]);
    const b = randn([3000, 48]);
    const run = (): [Float32Array, Float32Array] => {
      const y = tf.conv2d(x, f, 1, 'same');
      const z = tf.matMul(a, b);
      const out: [Float32Array, Float32Array] = [y.dataSync() as Float32Array, z.dataSync() as Float32Array];
      tf.dispose([y, z]);
      return out;
    };
    const saved = process.env['METALEARN_ORT_THREADS'];
    try {
      installOrtKernels(false);
      process.env['METALEARN_ORT_THREADS'] = '1';
      installOrtKernels(true);
      expect(ortKernelInfo().threads).toBe(1);
      const [y1, z1] = run();
      const [y1b, z1b] = run();
      expect(Buffer.from(y1b.buffer).equals(Buffer.from(y1.buffer))).toBe(true);
      expect(Buffer.from(z1b.buffer).equals(Buffer.from(z1.buffer))).toBe(true);
      installOrtKernels(false);
      process.env['METALEARN_ORT_THREADS'] = '2';
      installOrtKernels(true);
      expect(ortKernelInfo().threads).toBe(2);
      const [y2, z2] = run();
      expect(Buffer.from(y2.buffer).equals(Buffer.from(y1.buffer))).toBe(true);
      expect(Buffer.from(z2.buffer).equals(Buffer.from(z1.buffer))).toBe(true);
      process.env['METALEARN_ORT_THREADS'] = 'two';
      installOrtKernels(false);
      expect(() => installOrtKernels(true)).toThrow(/METALEARN_ORT_THREADS/);
    } finally {
      if (saved === undefined) delete process.env['METALEARN_ORT_THREADS'];
      else process.env['METALEARN_ORT_THREADS'] = saved;
      installOrtKernels(false);
      installOrtKernels(true);
    }
    tf.dispose([x, f, a, b]);
  });

  it('the switch restores the wasm kernels, and no tensors leak through either path', () => {
    const x = randn([4, 10, 10, 8]) as tf.Tensor4D;
    const f = randn([3, 3, 8, 8]) as tf.Tensor4D;
    const n0 = tf.memory().numTensors;
    installOrtKernels(false);
    expect(ortKernelInfo().active).toBe(false);
    const before = ortKernelInfo().calls;
    tf.tidy(() => {
      tf.conv2d(x, f, 1, 'same').dataSync();
    });
    expect(ortKernelInfo().calls).toEqual(before);
    installOrtKernels(true);
    expect(ortKernelInfo().active).toBe(true);
    tf.tidy(() => {
      tf.grads((w: tf.Tensor) => tf.sum(tf.square(tf.conv2d(x, w as tf.Tensor4D, 1, 'same'))))([f]).map((g) => g.dataSync());
    });
    expect(calls('Conv2D')[0]).toBeGreaterThan(before['Conv2D']?.ort ?? 0);
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([x, f]);
  });
});
