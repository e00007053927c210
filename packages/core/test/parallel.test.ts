import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, episodeFromWire, episodeToWire, initEngine, sumTaskGradients, transferablesOf, type TaskGradient } from '../src/index.js';

beforeAll(async () => {
  await initEngine({ backend: 'cpu', quiet: true });
});

function task(index: number, rng: Rng): TaskGradient {
  // values of very different magnitudes, so that the summation order changes float32 results
  const g = Float32Array.from({ length: 64 }, () => rng.normal() * 10 ** rng.int(8));
  return { index, loss: rng.next(), correct: rng.int(5), total: 5, grads: { w: g, b: g.slice(0, 3) }, metrics: { r: index }, buffers: { m: g.slice(0, 2) } };
}

describe('sumTaskGradients', () => {
  it('sums in task-index order whatever order the results arrive in (bitwise), and only in that order', () => {
    const rng = new Rng(1);
    const tasks = Array.from({ length: 6 }, (_, i) => task(i, rng));
    const ref = sumTaskGradients(tasks);
    for (const perm of [[5, 4, 3, 2, 1, 0], [2, 0, 5, 1, 4, 3]]) {
      const s = sumTaskGradients(perm.map((i) => tasks[i]!));
      expect(Array.from(s.grads.w!)).toEqual(Array.from(ref.grads.w!));
      expect(s.loss).toBe(ref.loss);
      expect(Array.from(s.buffers.m!)).toEqual(Array.from(ref.buffers.m!));
    }
    // a plain running sum in a different order does differ: the fixed order is what keeps results equal
    const rev = new Float32Array(64);
    for (const t of [...tasks].reverse()) for (let i = 0; i < 64; i++) rev[i] = rev[i]! + t.grads.w![i]!;
    const fwd = new Float32Array(64);
    for (const t of tasks) for (let i = 0; i < 64; i++) fwd[i] = fwd[i]! + t.grads.w![i]!;
    expect(Array.from(ref.grads.w!)).toEqual(Array.from(fwd));
    expect(Array.from(rev)).not.toEqual(Array.from(fwd));
    expect(ref.n).toBe(6);
    expect(ref.total).toBe(30);
    expect(ref.metrics.r).toBe(15);
  });

  it('rejects missing or repeated task indices and mismatched gradients', () => {
    const rng = new Rng(2);
    const [a, b] = [task(0, rng), task(1, rng)];
    expect(() => sumTaskGradients([a, { ...b, index: 0 }])).toThrow(/task indices must be 0\.\.1 once each, got \[0, 0\]/);
    expect(() => sumTaskGradients([a, { ...b, index: 2 }])).toThrow(/task indices/);
    expect(() => sumTaskGradients([a, { ...b, grads: { w: b.grads.w! } }])).toThrow(/task 1 has gradients for \[w\], task 0 for \[b, w\]/);
    expect(() => sumTaskGradients([a, { ...b, grads: { w: b.grads.w!, b: new Float32Array(2) } }])).toThrow(/gradient 'b' of task 1 has 2 values, expected 3/);
    expect(() => sumTaskGradients([])).toThrow(/no tasks/);
  });

  it('a result may cover several consecutive tasks (count): n counts tasks, coverage is checked', () => {
    const rng = new Rng(3);
    const [a, b, c] = [task(0, rng), task(1, rng), task(2, rng)];
    // tasks 0..3: one result for 0, one for 1..2 (count 2), one for 3
    const s = sumTaskGradients([{ ...c, index: 3 }, { ...b, index: 1, count: 2 }, a]);
    expect(s.n).toBe(4);
    const want = new Float32Array(64);
    for (const t of [a, b, c]) for (let i = 0; i < 64; i++) want[i] = want[i]! + t.grads.w![i]!;
    expect(Array.from(s.grads.w!)).toEqual(Array.from(want));
    expect(s.total).toBe(a.total + b.total + c.total);
    // a gap, an overlap, a bad count
    expect(() => sumTaskGradients([a, { ...b, index: 1, count: 2 }, { ...c, index: 2 }])).toThrow(/task indices must be 0\.\.3 once each, got \[0, 1\(\+2\), 2\]/);
    expect(() => sumTaskGradients([{ ...a, count: 2 }, { ...b, index: 3 }])).toThrow(/task indices/);
    expect(() => sumTaskGradients([{ ...a, count: 0 }])).toThrow(/task indices/);
  });
});

describe('episode wire format', () => {
  it('round-trips an episode as plain typed arrays whose buffers can be transferred', () => {
    const sx = tf.tensor4d(Float32Array.from({ length: 2 * 3 * 3 }, (_, i) => i), [2, 3, 3, 1]);
    const qx = tf.tensor4d(Float32Array.from({ length: 4 * 9 }, (_, i) => -i), [4, 3, 3, 1]);
    const ep = { ways: 2, shots: 1, support: { x: sx, y: Int32Array.from([0, 1]) }, query: { x: qx, y: Int32Array.from([1, 0, 1, 0]) } };
    const w = episodeToWire(ep);
    expect(transferablesOf(w)).toHaveLength(4);
    const back = episodeFromWire(structuredClone(w, { transfer: transferablesOf(w) }));
    expect(back.support.x.shape).toEqual([2, 3, 3, 1]);
    expect(Array.from(back.query.x.dataSync())).toEqual(Array.from(qx.dataSync()));
    expect(Array.from(back.query.y)).toEqual([1, 0, 1, 0]);
    // the original tensors are untouched by the transfer (the wire holds copies)
    expect(sx.dataSync()[5]).toBe(5);
    back.dispose!();
    tf.dispose([sx, qx]);
  });
});
