/**
 * Graph training on onnxruntime (onnx/trace.ts, onnx/autodiff.ts, onnx/graph.ts): the gradients of
 * graphs built from the layers' toOnnx are checked against the engine's tfjs gradients (same layers,
 * wasm backend) and against central finite differences of the graph's own loss; second-order MAML
 * against tfjs' second-order meta-gradient; single ops against finite differences.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../src/rng.js';
import { crossEntropy, initEngine } from '../src/engine/index.js';
import { relativeL2 } from '../src/metrics.js';
import { BatchNorm, Conv2d, Dense, Flatten, MaxPool, ReLU, Sequential, conv4 } from '../src/nn/index.js';
import type { Params } from '../src/nn/types.js';
import { appendGradients, compileLossGrad, compileMamlTask, crossEntropyNodes, OrtGraph, protoLogitsNodes, shapesOf, symbolicParams, TraceGraph, emitLayers } from '../src/onnx/index.js';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

/**
 * A small Conv-4-like net: a 14x14 conv (stays an ONNX Conv), then 7x7 and 1x1 outputs (im2col
 * lowering), an odd-sized max-pool (7 → 3). c2 reads 16 channels, so its im2col (forward and filter
 * gradient) is the Gather; c1 and c3 read fewer and take the Slice path.
 */
function smallNet(head = 0): Sequential {
  const layers = [
    new Conv2d({ name: 'c1', filters: 16, kernelSize: 3 }),
    new BatchNorm({ name: 'b1' }),
    new ReLU({ name: 'r1' }),
    new MaxPool({ name: 'p1', poolSize: 2 }),
    new Conv2d({ name: 'c2', filters: 8, kernelSize: 3 }),
    new BatchNorm({ name: 'b2' }),
    new ReLU({ name: 'r2' }),
    new MaxPool({ name: 'p2', poolSize: 2 }),
    new Conv2d({ name: 'c3', filters: 8, kernelSize: 3, padding: 'valid' }),
    new Flatten({ name: 'f' }),
  ];
  const net = new Sequential(layers, [14, 14, 2]);
  return head ? net.extend(new Dense({ name: 'head', units: head })) : net;
}

function randomize(params: Params, rng: Rng): Params {
  const out: Params = {};
  for (const [k, t] of Object.entries(params)) {
    out[k] = tf.tensor(rng.normalArray(t.size).map((v) => (k.includes('b1.weight') || k.includes('b2.weight') ? 1 + 0.3 * v : 0.3 * v)), t.shape);
    t.dispose();
  }
  return out;
}

function feedsOf(params: Params, extra: Record<string, Float32Array>): Record<string, Float32Array> {
  const f = { ...extra };
  for (const [k, t] of Object.entries(params)) f[k] = t.dataSync() as Float32Array;
  return f;
}

describe('graph autodiff (onnxruntime)', () => {
  it('loss gradients of a conv/bn/relu/pool/dense net match the tfjs engine and finite differences', () => {
    const rng = new Rng(3);
    const net = smallNet(3);
    const params = randomize(net.init(rng.fork('init')), rng.fork('rand'));
    const keys = Object.keys(params);
    const n = 6;
    const x = tf.tensor(rng.normalArray(n * 392), [n, 14, 14, 2]);
    const y = tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32');
    const onehot = tf.tidy(() => tf.cast(tf.oneHot(y, 3), 'float32')).dataSync() as Float32Array;
    const g = compileLossGrad(net, shapesOf(params, keys), (tg, f) => crossEntropyNodes(tg, f(tg.addInput('x', [n, 14, 14, 2])), tg.addInput('y', [n, 3])), { threads: 1 });
    try {
      const out = g.run(feedsOf(params, { x: x.dataSync() as Float32Array, y: onehot }));
      const loss = out['loss']![0]!;
      const refLoss = tf.tidy(() => crossEntropy(net.apply(params, x, { training: true }) as tf.Tensor2D, y).dataSync()[0]!);
      expect(Math.abs(loss - refLoss)).toBeLessThan(1e-5);
      const ref = tf.grads((...v: tf.Tensor[]) => crossEntropy(net.apply(Object.fromEntries(keys.map((k, i) => [k, v[i]!])), x, { training: true }) as tf.Tensor2D, y))(keys.map((k) => params[k]!));
      const grads = keys.map((k) => out[`grad:${k}`]!.slice());
      keys.forEach((k, i) => {
        const r = ref[i]!.dataSync();
        // conv biases before batch-norm have an exactly-zero gradient: compare absolutely
        if (k.endsWith('c1.bias') || k.endsWith('c2.bias')) expect(Math.max(...Array.from(grads[i]!, Math.abs))).toBeLessThan(1e-5);
        else expect(relativeL2(grads[i]!, r), k).toBeLessThan(1e-4);
      });
      tf.dispose(ref);
      // central finite differences of the graph's own loss along a random direction
      // a unit direction (the net has kinks: ReLU, max-pool; a small step keeps the difference smooth)
      const raw = keys.map((k) => rng.normalArray(params[k]!.size));
      const norm = Math.sqrt(raw.reduce((t, r) => t + r.reduce((u, v) => u + v * v, 0), 0));
      const dir = raw.map((r) => Float32Array.from(r, (v) => v / norm));
      const h = 1e-3;
      const at = (s: number) => {
        const f: Record<string, Float32Array> = { x: x.dataSync() as Float32Array, y: onehot };
        keys.forEach((k, i) => (f[k] = Float32Array.from(params[k]!.dataSync(), (v, j) => v + s * h * dir[i]![j]!)));
        return g.run(f)['loss']![0]!;
      };
      let an = 0;
      keys.forEach((_, i) => grads[i]!.forEach((v, j) => (an += v * dir[i]![j]!)));
      const fd = (at(1) - at(-1)) / (2 * h);
      expect(Math.abs(an)).toBeGreaterThan(1e-2);
      expect(Math.abs(fd - an) / Math.abs(an)).toBeLessThan(2e-2);
    } finally {
      g.release();
      tf.dispose([x, y, ...Object.values(params)]);
    }
  });

  it('second-order MAML (2 inner steps) matches the tfjs meta-gradient; first-order differs from it', () => {
    const rng = new Rng(5);
    const net = smallNet(3);
    const params = randomize(net.init(rng.fork('init')), rng.fork('rand'));
    const keys = Object.keys(params);
    const xs = tf.tensor(rng.normalArray(3 * 392), [3, 14, 14, 2]);
    const xq = tf.tensor(rng.normalArray(6 * 392), [6, 14, 14, 2]);
    const ys = tf.tensor1d([0, 1, 2], 'int32');
    const yq = tf.tensor1d([0, 0, 1, 1, 2, 2], 'int32');
    const oh = (t: tf.Tensor1D) => tf.tidy(() => tf.cast(tf.oneHot(t, 3), 'float32')).dataSync() as Float32Array;
    const spec = { model: net, shapes: shapesOf(params, keys), support: 3, query: 6, ways: 3, innerSteps: 2, innerLr: 0.3 };
    const second = compileMamlTask({ ...spec, firstOrder: false }, { threads: 2 });
    const first = compileMamlTask({ ...spec, firstOrder: true }, { threads: 1 });
    try {
      const feeds = feedsOf(params, { xs: xs.dataSync() as Float32Array, xq: xq.dataSync() as Float32Array, ys: oh(ys), yq: oh(yq) });
      const o2 = second.run(feeds);
      const g2 = keys.map((k) => o2[`grad:${k}`]!.slice());
      const o1 = first.run(feeds);
      const g1 = keys.map((k) => o1[`grad:${k}`]!.slice());
      const train = { training: true };
      const pick = (v: tf.Tensor[]): Params => Object.fromEntries(keys.map((k, i) => [k, v[i]!]));
      const adapt = (v: tf.Tensor[]) => {
        let fast = v;
        for (let s = 0; s < 2; s++) {
          const g = tf.grads((...u: tf.Tensor[]) => crossEntropy(net.apply(pick(u), xs, train) as tf.Tensor2D, ys))(fast);
          fast = fast.map((t, i) => tf.sub(t, tf.mul(g[i]!, 0.3)));
        }
        return fast;
      };
      const ref = tf.tidy(() => tf.grads((...u: tf.Tensor[]) => crossEntropy(net.apply(pick(adapt(u)), xq, train) as tf.Tensor2D, yq))(keys.map((k) => params[k]!)));
      let worst = 0;
      let foWorst = 0;
      keys.forEach((k, i) => {
        if (k.endsWith('c1.bias') || k.endsWith('c2.bias')) return;
        const r = ref[i]!.dataSync();
        worst = Math.max(worst, relativeL2(g2[i]!, r));
        foWorst = Math.max(foWorst, relativeL2(g1[i]!, r));
      });
      expect(worst).toBeLessThan(1e-3);
      // the second-order terms matter here, so a graph that dropped them would fail the check above
      expect(foWorst).toBeGreaterThan(1e-2);
      tf.dispose(ref);
    } finally {
      second.release();
      first.release();
      tf.dispose([xs, xq, ys, yq, ...Object.values(params)]);
    }
  });

  it('single-op rules match finite differences (smooth ops, broadcasting, slices, pads, concat, pools, unsqueeze, sum of squares, gather, scatter-add, batch-norm)', () => {
    const rng = new Rng(7);
    const g = new TraceGraph();
    const a = g.addInput('a', [2, 3, 4, 4]);
    const b = g.addInput('b', [1, 3, 1, 1]);
    // a chain over many rules; positive arguments for Log / Sqrt
    let v = g.addNode('Add', [g.addNode('Mul', [a, b]), g.addNode('Div', [a, g.addNode('Add', [g.addNode('Mul', [b, b]), g.float(1, [])])])]);
    v = g.addNode('Tanh', [v]);
    const pos = g.addNode('Add', [g.addNode('Exp', [g.addNode('Neg', [v])]), g.float(0.5, [])]);
    v = g.addNode('Sub', [g.addNode('Log', [pos]), g.addNode('Sqrt', [pos])]);
    v = g.addNode('Concat', [v, g.addNode('Sigmoid', [a])], { axis: 1 });
    v = g.addNode('Pad', [v, g.int64([0, 0, 1, 0, 0, 0, 0, 1])]);
    v = g.addNode('Slice', [v, g.int64([1, 0]), g.int64([4, 4]), g.int64([2, 3])]);
    v = g.addNode('AveragePool', [g.addNode('LeakyRelu', [v], { alpha: 0.2 })], { kernel_shape: [2, 2], strides: [2, 2] });
    v = g.addNode('Softmax', [g.addNode('Transpose', [v], { perm: [0, 2, 3, 1] })], { axis: -1 });
    v = g.addNode('Expand', [g.addNode('ReduceMean', [v], { axes: [1], keepdims: 1 }), g.int64([2, 3, 2, 6])]);
    const w = g.addNode('Mul', [v, g.float(Array.from({ length: 72 }, (_, i) => Math.sin(i + 1)), [2, 3, 2, 6])]);
    // plus Σ (a·b)² through Unsqueeze and ReduceSumSquare (the prototype head's ops)
    const sq = g.addNode('ReduceSumSquare', [g.addNode('Unsqueeze', [g.addNode('Mul', [a, b]), g.int64([1])])], { axes: [3, 4], keepdims: 0 });
    // plus a row Gather with repeated rows and a ScatterND that adds rows twice (im2col's ops)
    const rows = g.addNode('Reshape', [g.addNode('Mul', [a, b]), g.int64([8, 12])]);
    const gth = g.addNode('Gather', [rows, g.int64([0, 3, 3, 7, 1, 0])], { axis: 0 });
    const at = g.addConstant('at', { data: [2, 2, 5, 0, 7, 1], shape: [6, 1], dtype: 'int64' });
    const sct = g.addNode('ScatterND', [g.addNode('Tanh', [rows]), at, g.addNode('Mul', [gth, gth])], { reduction: 'add' });
    const sw = g.float(Array.from({ length: 96 }, (_, i) => Math.cos(i)), [8, 12]);
    // plus a BatchNormalization (inference form) with every input a function of b (batch-norm layers)
    const b1 = g.addNode('Reshape', [b, g.int64([3])]);
    const bn = g.addNode('BatchNormalization', [a, b1, g.addNode('Mul', [b1, g.float(0.5, [])]), g.addNode('Mul', [b1, g.float(0.3, [])]), g.addNode('Add', [g.addNode('Mul', [b1, b1]), g.float(0.05, [])])], { epsilon: 1e-3 });
    const bnw = g.float(Array.from({ length: 96 }, (_, i) => Math.sin(2 * i)), [2, 3, 4, 4]);
    const loss = g.addNode('Sum', [
      g.addNode('ReduceSum', [w, g.int64([0, 1, 2, 3])], { keepdims: 0 }),
      g.addNode('Mul', [g.addNode('ReduceSum', [sq, g.int64([0, 1, 2])], { keepdims: 0 }), g.float(0.01, [])]),
      g.addNode('Mul', [g.addNode('ReduceSum', [g.addNode('Mul', [sct, sw]), g.int64([0, 1])], { keepdims: 0 }), g.float(0.05, [])]),
      g.addNode('Mul', [g.addNode('ReduceSum', [g.addNode('Mul', [g.addNode('Tanh', [bn]), bnw]), g.int64([0, 1, 2, 3])], { keepdims: 0 }), g.float(1, [])]),
    ]);
    const [ga, gb] = appendGradients(g, loss, [a, b]) as [string, string];
    const graph = new OrtGraph(g, { loss, ga, gb }, { threads: 1 });
    try {
      const av = Float32Array.from(rng.normalArray(96));
      const bv = Float32Array.from(rng.normalArray(3));
      const out = graph.run({ a: av, b: bv });
      const an = [out['ga']!.slice(), out['gb']!.slice()];
      const h = 1e-2;
      for (const [which, base] of [[0, av], [1, bv]] as const) {
        const dir = Float32Array.from(rng.normalArray(base.length));
        const at = (s: number) => {
          const p = Float32Array.from(base, (x, i) => x + s * h * dir[i]!);
          return graph.run(which === 0 ? { a: p, b: bv } : { a: av, b: p })['loss']![0]!;
        };
        const fd = (at(1) - at(-1)) / (2 * h);
        const dot = an[which]!.reduce((t, x, i) => t + x * dir[i]!, 0);
        expect(Math.abs(dot)).toBeGreaterThan(1e-3);
        expect(Math.abs(fd - dot) / Math.abs(dot), `input ${which}`).toBeLessThan(2e-2);
      }
    } finally {
      graph.release();
    }
  });

  it('ProtoNet episode graph gives the tfjs loss and gradients', () => {
    const rng = new Rng(11);
    const net = smallNet();
    const params = randomize(net.init(rng.fork('init')), rng.fork('rand'));
    const keys = Object.keys(params);
    const xs = tf.tensor(rng.normalArray(3 * 392), [3, 14, 14, 2]);
    const xq = tf.tensor(rng.normalArray(6 * 392), [6, 14, 14, 2]);
    const yq = tf.tensor1d([0, 0, 1, 1, 2, 2], 'int32');
    const g = compileLossGrad(net, shapesOf(params, keys), (tg, f) => {
      const zs = f(tg.addInput('xs', [3, 14, 14, 2]));
      const zq = f(tg.addInput('xq', [6, 14, 14, 2]));
      return crossEntropyNodes(tg, protoLogitsNodes(tg, zq, zs), tg.addInput('yq', [6, 3]));
    });
    try {
      const out = g.run(feedsOf(params, { xs: xs.dataSync() as Float32Array, xq: xq.dataSync() as Float32Array, yq: tf.tidy(() => tf.cast(tf.oneHot(yq, 3), 'float32')).dataSync() as Float32Array }));
      const f = (p: Params) => {
        const zs = net.apply(p, xs, { training: true }) as tf.Tensor2D;
        const zq = net.apply(p, xq, { training: true }) as tf.Tensor2D;
        const d = tf.add(tf.sub(tf.sum(tf.square(zq), 1, true), tf.mul(tf.matMul(zq, zs, false, true), 2)), tf.reshape(tf.sum(tf.square(zs), 1), [1, 3]));
        return crossEntropy(tf.neg(d) as tf.Tensor2D, yq);
      };
      expect(Math.abs(out['loss']![0]! - tf.tidy(() => f(params).dataSync()[0]!))).toBeLessThan(1e-4);
      const ref = tf.grads((...v: tf.Tensor[]) => f(Object.fromEntries(keys.map((k, i) => [k, v[i]!]))))(keys.map((k) => params[k]!));
      keys.forEach((k, i) => {
        // biases before batch-norm, and the last conv's bias (it shifts every embedding alike, so
        // distances do not change), have an exactly-zero gradient: compare absolutely
        if (/^c\d\.bias$/.test(k)) expect(Math.max(...Array.from(out[`grad:${k}`]!, Math.abs)), k).toBeLessThan(1e-5);
        else expect(relativeL2(out[`grad:${k}`]!, ref[i]!.dataSync()), k).toBeLessThan(1e-4);
      });
      tf.dispose(ref);
    } finally {
      g.release();
      tf.dispose([xs, xq, yq, ...Object.values(params)]);
    }
  });

  it('says what it cannot do: an op without a rule, strided convs, concrete parameters', () => {
    const g = new TraceGraph();
    const x = g.addInput('x', [2, 3]);
    const l = g.addNode('ReduceSum', [g.addNode('Abs', [x]), g.int64([0, 1])], { keepdims: 0 });
    expect(() => appendGradients(g, l, [x])).toThrow(/no gradient rule for ONNX op Abs/);

    const g2 = new TraceGraph();
    const strided = new Sequential([new Conv2d({ name: 'c', filters: 2, kernelSize: 3, strides: 2 }), new Flatten({ name: 'f' })], [6, 6, 1]);
    const p = symbolicParams(g2, { 'c.weight': [3, 3, 1, 2], 'c.bias': [2] });
    const z = emitLayers(g2, strided, p, g2.addInput('x', [1, 6, 6, 1]));
    const s = g2.addNode('ReduceSum', [z, g2.int64([0, 1])], { keepdims: 0 });
    expect(() => appendGradients(g2, s, ['c.weight'])).toThrow(/stride 1/);

    const g3 = new TraceGraph();
    const net = conv4({ inputShape: [16, 16, 1] });
    const real = net.init(new Rng(1));
    expect(() => emitLayers(g3, net, real, g3.addInput('x', [1, 16, 16, 1]), { batchStats: true })).toThrow(/concrete tensor/);
    tf.dispose(Object.values(real));
  });
});
