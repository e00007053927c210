/**
 * Engine: backend choice, the project's conv/pool gradients against tfjs' built-in backprop kernels
 * (cpu backend, first order), conv1d being conv2d underneath, wasm kernel coverage, and memory
 * staying flat across training steps.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../src/rng.js';
import {
  batchNormTrain,
  conv1d,
  conv2d,
  crossEntropy,
  dense,
  engineInfo,
  initEngine,
  maxPool2d,
  projectGradientKernels,
} from '../src/engine/index.js';

function randn(rng: Rng, shape: number[], std = 1): tf.Tensor {
  return tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1), 0, std), shape);
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  const x = a.dataSync();
  const y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

describe('initEngine', () => {
  it('picks wasm when @tensorflow/tfjs-node is not installed, is idempotent, and reports the choice', async () => {
    const saved = process.env['METALEARN_BACKEND'];
    delete process.env['METALEARN_BACKEND'];
    try {
      const info = await initEngine({ quiet: true });
      // tfjs-node is deliberately not a dependency of this repository
      let nodeInstalled = true;
      try {
        const name = '@tensorflow/tfjs-node';
        await import(name);
      } catch {
        nodeInstalled = false;
      }
      expect(info.backend).toBe(nodeInstalled ? 'tensorflow' : 'wasm');
      expect(info.reason.length).toBeGreaterThan(0);
      expect(tf.getBackend()).toBe(info.backend);
      const t0 = performance.now();
      const again = await initEngine({ quiet: true });
      expect(performance.now() - t0).toBeLessThan(50);
      expect(again).toEqual(info);
      expect(engineInfo()).toEqual(info);
    } finally {
      if (saved !== undefined) process.env['METALEARN_BACKEND'] = saved;
    }
  });

  it('honours an explicit backend and rejects unknown ones with a clear message', async () => {
    const cpu = await initEngine({ backend: 'cpu', quiet: true });
    expect(cpu.backend).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    await expect(initEngine({ backend: 'gpu' as never, quiet: true })).rejects.toThrow(/unknown backend 'gpu'/);
    const w = await initEngine({ backend: 'wasm', quiet: true });
    expect(w.backend).toBe('wasm');
  });

  it('registers gradients for every op a Conv-4 / MLP / LSTM uses', () => {
    for (const k of ['Conv2D', 'MaxPool', 'AvgPool', 'FusedBatchNorm', 'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Softmax', 'BatchMatMul', 'Concat', 'Slice', 'GatherV2', 'Mean', 'Sum', 'Square', 'Sqrt', 'Max']) {
      expect(projectGradientKernels).toContain(k);
    }
  });
});

describe('conv gradients vs tfjs built-in backprop kernels (cpu backend, first order)', () => {
  it('dx and dW agree on 24 random shapes (stride 1/2, same/valid)', async () => {
    await initEngine({ backend: 'cpu', quiet: true });
    const rng = new Rng('conv-vs-builtin');
    for (let t = 0; t < 24; t++) {
      const k = [1, 2, 3, 5][rng.int(4)]!;
      const h = k + rng.int(7);
      const w = k + rng.int(7);
      const cin = 1 + rng.int(3);
      const cout = 1 + rng.int(4);
      const n = 1 + rng.int(2);
      const s = 1 + rng.int(2);
      const pad = rng.int(2) === 0 ? 'same' : 'valid';
      tf.tidy(() => {
        const x = randn(rng, [n, h, w, cin]) as tf.Tensor4D;
        const f = randn(rng, [k, k, cin, cout]) as tf.Tensor4D;
        const y = tf.conv2d(x, f, s, pad);
        const dy = randn(rng, y.shape) as tf.Tensor4D;
        const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, s, pad))([x, f], dy);
        // tfjs' own kernels
        const dxRef = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, {
          strides: [s, s],
          pad,
          dataFormat: 'NHWC',
          inputShape: x.shape,
        } as never) as tf.Tensor;
        const dfRef = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
          strides: [s, s],
          pad,
          dataFormat: 'NHWC',
          filterShape: f.shape,
        } as never) as tf.Tensor;
        const where = `case ${t}: x=[${x.shape}] f=[${f.shape}] s=${s} ${pad}`;
        expect(maxAbsDiff(dx!, dxRef), where).toBeLessThan(1e-4);
        expect(maxAbsDiff(df!, dfRef), where).toBeLessThan(1e-4);
      });
    }
  });

  it('max-pool gradient agrees with the built-in MaxPoolGrad kernel (distinct values)', async () => {
    await initEngine({ backend: 'cpu', quiet: true });
    const rng = new Rng('maxpool-vs-builtin');
    for (const [k, s, pad] of [
      [2, 2, 'valid'],
      [3, 2, 'same'],
      [3, 1, 'valid'],
      [2, 1, 'same'],
    ] as const) {
      tf.tidy(() => {
        const x = randn(rng, [2, 7, 6, 3]) as tf.Tensor4D;
        const y = tf.maxPool(x, k, s, pad);
        const dy = randn(rng, y.shape) as tf.Tensor4D;
        const dx = tf.grad((a: tf.Tensor) => tf.maxPool(a as tf.Tensor4D, k, s, pad))(x, dy);
        const ref = tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: y }, { filterSize: k, strides: s, pad } as never) as tf.Tensor;
        expect(maxAbsDiff(dx, ref), `k=${k} s=${s} ${pad}`).toBeLessThan(1e-5);
      });
    }
  });

  it('wasm gradients equal cpu gradients for a conv block (conv, batch-norm, relu, max-pool)', async () => {
    const rng = new Rng('wasm-vs-cpu');
    const xs = rng.normalArray(2 * 9 * 9 * 3);
    const ws = rng.normalArray(3 * 3 * 3 * 5);
    const run = () =>
      tf.tidy(() => {
        const x = tf.tensor4d(xs, [2, 9, 9, 3]);
        const w = tf.tensor4d(ws, [3, 3, 3, 5]);
        const g = tf.ones([5]) as tf.Tensor1D;
        const b = tf.zeros([5]) as tf.Tensor1D;
        const f = (a: tf.Tensor, c: tf.Tensor) =>
          tf.sum(tf.square(maxPool2d(tf.relu(batchNormTrain(conv2d(a as tf.Tensor4D, c as tf.Tensor4D, 2, 'same'), g, b).y) as tf.Tensor4D, 2)));
        return tf.grads(f)([x, w]).map((t) => Array.from(t.dataSync()));
      });
    await initEngine({ backend: 'cpu', quiet: true });
    const onCpu = run();
    await initEngine({ backend: 'wasm', quiet: true });
    const onWasm = run();
    onCpu.forEach((c, i) => {
      const m = Math.max(...c.map((v, j) => Math.abs(v - onWasm[i]![j]!)));
      expect(m).toBeLessThan(1e-3);
    });
  });
});

describe('engine ops', () => {
  it('conv1d runs as a Conv2D kernel (so it shares the conv2d gradient)', async () => {
    await initEngine({ backend: 'wasm', quiet: true });
    const x = tf.ones([1, 8, 2]) as tf.Tensor3D;
    const w = tf.ones([3, 2, 4]) as tf.Tensor3D;
    const prof = await tf.profile(() => conv1d(x, w, 1, 'same'));
    expect(prof.kernelNames).toContain('Conv2D');
    expect(prof.kernelNames.some((k) => /conv1d/i.test(k))).toBe(false);
    tf.dispose([x, w]);
  });

  it('every op of a Conv-4 / LSTM training step, with second-order gradients, runs on wasm', async () => {
    await initEngine({ backend: 'wasm', quiet: true });
    const rng = new Rng('wasm-kernels');
    tf.tidy(() => {
      const x = randn(rng, [2, 12, 12, 1]) as tf.Tensor4D;
      const w = randn(rng, [3, 3, 1, 4], 0.3) as tf.Tensor4D;
      const head = randn(rng, [4 * 6 * 6, 3], 0.1) as tf.Tensor2D;
      const lw = randn(rng, [3 + 2, 8], 0.3) as tf.Tensor2D;
      const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const h = maxPool2d(tf.relu(batchNormTrain(conv2d(x, a as tf.Tensor4D), tf.ones([4]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D).y) as tf.Tensor4D, 2);
        const logits = dense(tf.reshape(h, [2, -1]) as tf.Tensor2D, b as tf.Tensor2D);
        const z = tf.matMul(tf.concat([logits, tf.zeros([2, 2])], 1), c as tf.Tensor2D);
        const gates = tf.split(z, 4, 1);
        const cell = tf.mul(tf.sigmoid(gates[0]!), tf.tanh(gates[1]!));
        const hid = tf.mul(tf.sigmoid(gates[2]!), tf.tanh(tf.add(cell, tf.sigmoid(gates[3]!))));
        return tf.add(crossEntropy(logits, [0, 2]), tf.mean(tf.square(tf.gather(hid, [1, 0]))));
      };
      const hv = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const g = tf.grads(loss)([a, b, c]);
        return tf.addN(g.map((t) => tf.sum(tf.square(t))));
      })([w, head, lw]);
      for (const t of hv) expect(Number.isFinite(tf.sum(tf.abs(t)).dataSync()[0]!)).toBe(true);
      expect(tf.sum(tf.abs(hv[0]!)).dataSync()[0]!).toBeGreaterThan(0);
    });
  });
});

describe('memory', () => {
  it('tf.memory().numTensors is flat across 20 training steps (first- and second-order)', async () => {
    await initEngine({ backend: 'wasm', quiet: true });
    const rng = new Rng('memory');
    let params: tf.Tensor[] = [randn(rng, [3, 3, 1, 4], 0.3), randn(rng, [3, 3, 4, 4], 0.2), randn(rng, [4 * 3 * 3, 5], 0.1)];
    const x = randn(rng, [4, 12, 12, 1]) as tf.Tensor4D;
    const labels = [0, 1, 2, 3];
    const net = (p: tf.Tensor[], inp: tf.Tensor4D) => {
      let h = maxPool2d(tf.relu(batchNormTrain(conv2d(inp, p[0] as tf.Tensor4D), tf.ones([4]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D).y) as tf.Tensor4D, 2);
      h = maxPool2d(tf.relu(conv2d(h, p[1] as tf.Tensor4D)) as tf.Tensor4D, 2);
      return dense(tf.reshape(h, [inp.shape[0], -1]) as tf.Tensor2D, p[2] as tf.Tensor2D);
    };
    const counts: number[] = [];
    for (let step = 0; step < 20; step++) {
      const second = step % 2 === 1;
      const next = tf.tidy(() => {
        const outer = (...p: tf.Tensor[]) => {
          if (!second) return crossEntropy(net(p, x), labels);
          // one differentiable inner step (MAML-style)
          const g = tf.grads((...q: tf.Tensor[]) => crossEntropy(net(q, x), labels))(p);
          const fast = p.map((pi, i) => tf.sub(pi, tf.mul(g[i]!, 0.4)));
          return crossEntropy(net(fast, x), labels);
        };
        const g = tf.grads(outer)(params);
        return params.map((p, i) => tf.sub(p, tf.mul(g[i]!, 0.01)));
      });
      tf.dispose(params);
      params = next;
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts.slice(1)).size, `numTensors per step: ${counts.join(',')}`).toBe(1);
    tf.dispose([...params, x]);
  });
});

describe('conv2dInputGrad with a filter larger than its output (swapped form)', () => {
  it('equals the cpu backend Conv2DBackpropInput kernel (valid, same, explicit pads)', async () => {
    await initEngine({ backend: 'cpu', quiet: true });
    const rng = new Rng(11);
    const cases: [number[], number[], 'valid' | 'same' | [[number, number], [number, number], [number, number], [number, number]]][] = [
      [[2, 6, 7, 3], [5, 6, 3, 4], 'valid'],
      [[2, 3, 3, 2], [4, 4, 2, 3], 'same'],
      [[3, 5, 5, 2], [5, 5, 2, 2], [[0, 0], [1, 1], [1, 1], [0, 0]]],
    ];
    for (const [xs, fs, pad] of cases) {
      const x = randn(rng, xs) as tf.Tensor4D;
      const f = randn(rng, fs) as tf.Tensor4D;
      const y = tf.conv2d(x, f, 1, pad);
      expect(fs[0]! * fs[1]!).toBeGreaterThan(y.shape[1] * y.shape[2]);
      const dy = randn(rng, y.shape);
      const ours = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, f, 1, pad), dy)))(x);
      const ref = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { strides: [1, 1], pad, inputShape: xs, dataFormat: 'NHWC', dilations: [1, 1] } as never) as tf.Tensor;
      expect(maxAbsDiff(ours, ref), `x ${xs} filter ${fs} pad ${JSON.stringify(pad)}`).toBeLessThan(1e-4);
      tf.dispose([x, f, y, dy, ours, ref]);
    }
    await initEngine({ backend: 'wasm', quiet: true });
  });
});
