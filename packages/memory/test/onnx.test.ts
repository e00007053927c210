import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { Rng } from '@metalearn/core';
import { LstmModel, MannModel, exportSequenceStep, initialStateArrays, buildBatch, type SequenceModel, type SeqState } from '@metalearn/memory';
import { useCpu } from './helpers.js';

beforeAll(useCpu);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * Stream a whole episode (T steps, batch B) through the ONNX step graph with onnxruntime, feeding
 * each step's state outputs back as the next inputs, and compare logits and state with tfjs.
 */
async function streamParity(model: SequenceModel, seed: number, T: number, B: number): Promise<{ logits: number; state: number }> {
  const params = model.init(new Rng(seed));
  const onnx = exportSequenceStep(model, params);
  const sess = await ort.InferenceSession.create(onnx.bytes);
  const rng = new Rng(seed + 1);
  const D = model.inputSize;
  const C = model.classes;
  const xs = Array.from({ length: B }, () => tf.tensor2d(rng.normalArray(T * D), [T, D]));
  const ys = Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(C)));
  const batch = buildBatch(xs, ys, C);
  const xT = tf.unstack(batch.x, 1) as tf.Tensor2D[];
  const yT = tf.unstack(batch.yPrev, 1) as tf.Tensor2D[];
  let tfState: SeqState = model.initialState(B);
  const init = initialStateArrays(model, B);
  let feeds: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(init)) feeds[k] = new ort.Tensor('float32', v.data, v.dims);
  let worstLogits = 0;
  let worstState = 0;
  for (let t = 0; t < T; t++) {
    const r = model.step(params, tfState, xT[t]!, yT[t]!);
    tfState = r.state;
    feeds.x = new ort.Tensor('float32', xT[t]!.dataSync() as Float32Array, [B, D]);
    feeds.y_prev = new ort.Tensor('float32', yT[t]!.dataSync() as Float32Array, [B, C]);
    const out = await sess.run(feeds);
    worstLogits = Math.max(worstLogits, maxAbsDiff(out.logits!.data as Float32Array, r.logits.dataSync()));
    const next: Record<string, ort.Tensor> = {};
    for (const k of Object.keys(model.stateShapes)) {
      const o = out[`${k}_out`]!;
      expect(o.dims).toEqual(tfState[k]!.shape);
      worstState = Math.max(worstState, maxAbsDiff(o.data as Float32Array, tfState[k]!.dataSync()));
      next[`${k}_in`] = o;
    }
    feeds = next;
  }
  return { logits: worstLogits, state: worstState };
}

describe('ONNX step graphs stream an episode like tfjs', () => {
  it('MANN: state I/O, 50 steps, batch 2, max abs diff <= 1e-4', async () => {
    const model = new MannModel(20, 5, { controllerSize: 24, memorySlots: 16, memoryWidth: 8, readHeads: 3, gamma: 0.95, keyStrength: true });
    const d = await streamParity(model, 11, 50, 2);
    expect(d.logits).toBeLessThanOrEqual(1e-4);
    expect(d.state).toBeLessThanOrEqual(1e-4);
  });

  it('MANN without key strength', async () => {
    const model = new MannModel(6, 3, { controllerSize: 8, memorySlots: 6, memoryWidth: 4, readHeads: 1, gamma: 0.9, keyStrength: false });
    const d = await streamParity(model, 5, 12, 3);
    expect(d.logits).toBeLessThanOrEqual(1e-4);
    expect(d.state).toBeLessThanOrEqual(1e-4);
  });

  it("MANN writing its read keys (writeVector 'key')", async () => {
    const model = new MannModel(6, 3, { controllerSize: 8, memorySlots: 6, memoryWidth: 4, readHeads: 2, gamma: 0.9, keyStrength: true, writeVector: 'key' });
    expect(Object.keys(model.init(new Rng(1))).some((k) => k.startsWith('add.'))).toBe(false);
    const d = await streamParity(model, 5, 12, 2);
    expect(d.logits).toBeLessThanOrEqual(1e-4);
    expect(d.state).toBeLessThanOrEqual(1e-4);
  });

  it('LSTM meta-learner step graph', async () => {
    const model = new LstmModel(10, 4, { controllerSize: 12 });
    const d = await streamParity(model, 3, 20, 2);
    expect(d.logits).toBeLessThanOrEqual(1e-4);
    expect(d.state).toBeLessThanOrEqual(1e-4);
  });

  it('graph I/O names and shapes', () => {
    const model = new MannModel(6, 3, { controllerSize: 8, memorySlots: 6, memoryWidth: 4, readHeads: 2, gamma: 0.9, keyStrength: true });
    const m = exportSequenceStep(model, model.init(new Rng(1)));
    expect(m.inputs.map((i) => i.name)).toEqual(['x', 'y_prev', 'h_in', 'c_in', 'memory_in', 'usage_in', 'read_w_in', 'reads_in']);
    expect(m.outputs.map((o) => o.name)).toEqual(['logits', 'h_out', 'c_out', 'memory_out', 'usage_out', 'read_w_out', 'reads_out']);
    expect(m.inputs.find((i) => i.name === 'memory_in')!.shape).toEqual(['batch', 6, 4]);
  });
});

describe('on the wasm backend (the one training and the pipeline use)', () => {
  it('least-used one-hots are floats and the adapted MANN matches onnxruntime', async () => {
    const { initEngine } = await import('@metalearn/core');
    const { leastUsed, mannFactory } = await import('@metalearn/memory');
    await initEngine({ backend: 'wasm', quiet: true });
    try {
      expect(Array.from(leastUsed(tf.tensor2d([[0.5, 0.1, 0.3, 0.2]]), 2).dataSync())).toEqual([0, 1, 0, 0, 0, 0, 0, 1]);
      const l = mannFactory.create({ controllerSize: 8, memorySlots: 8, memoryWidth: 4, readHeads: 2 }, { inputShape: [6, 6, 1], seed: 1 });
      const rng = new Rng(2);
      const clf = l.adapt({ x: tf.tensor4d(rng.uniformArray(5 * 36), [5, 6, 6, 1]), y: Int32Array.from([0, 1, 2, 3, 4]) }, 5);
      const qx = tf.tensor4d(rng.uniformArray(7 * 36), [7, 6, 6, 1]);
      const want = clf.predict(qx).dataSync();
      const sess = await ort.InferenceSession.create(clf.toOnnx().bytes);
      const got = (await sess.run({ x: new ort.Tensor('float32', qx.dataSync() as Float32Array, [7, 6, 6, 1]) })).logits!.data as Float32Array;
      expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-4);
      clf.dispose();
      l.dispose();
    } finally {
      await initEngine({ backend: 'cpu', quiet: true });
    }
  });
});
