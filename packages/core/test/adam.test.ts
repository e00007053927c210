import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Adam, stepDecayLr } from '../src/index.js';

/** Reference Adam on plain numbers (torch.optim.Adam's update). */
function refAdam(p0: number[], grads: number[][], lr: number, wd = 0): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, i) => {
    const t = i + 1;
    for (let j = 0; j < p.length; j++) {
      const gj = g[j]! + wd * p[j]!;
      m[j] = 0.9 * m[j]! + 0.1 * gj;
      v[j] = 0.999 * v[j]! + 0.001 * gj * gj;
      p[j] = p[j]! - (lr * (m[j]! / (1 - 0.9 ** t))) / (Math.sqrt(v[j]! / (1 - 0.999 ** t)) + 1e-8);
    }
  });
  return p;
}

describe('Adam', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('matches the reference update, with and without weight decay', () => {
    const grads = [[0.5, -1, 2], [0.1, 0.3, -0.7], [1, 1, 1]];
    for (const wd of [0, 0.1]) {
      const adam = new Adam({ lr: 0.01, weightDecay: wd });
      let params = { w: tf.tensor1d([1, 2, 3]) };
      for (const g of grads) {
        const next = adam.step(params, { w: tf.tensor1d(g) });
        params.w.dispose();
        params = next as { w: tf.Tensor1D };
      }
      const want = refAdam([1, 2, 3], grads, 0.01, wd);
      Array.from(params.w.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 5));
    }
  });

  it('state round trip continues identically; bad state is refused', () => {
    const a = new Adam({ lr: 0.1 });
    const p = { w: tf.tensor1d([1, -1]) };
    const p1 = a.step(p, { w: tf.tensor1d([0.3, 0.2]) });
    const b = new Adam({ lr: 0.1 });
    b.load(JSON.parse(JSON.stringify(a.state())));
    expect(b.stepCount).toBe(1);
    const ga = a.step(p1, { w: tf.tensor1d([-0.5, 0.9]) });
    const gb = b.step(p1, { w: tf.tensor1d([-0.5, 0.9]) });
    expect(Array.from(ga.w!.dataSync())).toEqual(Array.from(gb.w!.dataSync()));
    expect(() => b.load({ t: 1, 'x/w': 3 })).toThrow(/unexpected optimiser state entry 'x\/w'/);
    expect(() => b.load({})).toThrow(/integer step count 't'/);
    expect(() => a.step(p1, { nope: tf.scalar(1) })).toThrow(/unknown parameter 'nope'/);
  });

  it('clips the global gradient norm and clones parameters without a gradient', () => {
    const a = new Adam({ lr: 1, clipNorm: 1 });
    const b = new Adam({ lr: 1 });
    const p = { w: tf.tensor1d([0, 0]), frozen: tf.tensor1d([5]) };
    // Adam's first step is scale-invariant in g, so compare the moments via a second, mixed step
    const g1 = { w: tf.tensor1d([30, 40]) };
    const a1 = a.step(p, g1);
    const b1 = b.step(p, { w: tf.tensor1d([0.6, 0.8]) });
    const a2 = a.step(a1, { w: tf.tensor1d([0.6, 0.8]) });
    const b2 = b.step(b1, { w: tf.tensor1d([0.6, 0.8]) });
    Array.from(a2.w!.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(b2.w!.dataSync()[i]!, 5));
    expect(a1.frozen).not.toBe(p.frozen);
    expect(Array.from(a1.frozen!.dataSync())).toEqual([5]);
  });

  it('halves the learning rate on schedule', () => {
    expect(stepDecayLr(1e-3, 0, 2000)).toBe(1e-3);
    expect(stepDecayLr(1e-3, 4000, 2000)).toBeCloseTo(2.5e-4, 12);
    expect(stepDecayLr(1e-3, 4000, 0)).toBe(1e-3);
  });
});

describe('maxAbsDiff', () => {
  it('compares tensors and arrays and refuses values it cannot read', async () => {
    const { maxAbsDiff } = await import('../src/index.js');
    const a = tf.tensor2d([[1, 2], [3, 4]]);
    expect(maxAbsDiff(a, { data: Float32Array.from([1, 2, 3, 4.5]), shape: [2, 2] })).toBeCloseTo(0.5, 6);
    // a method in place of data (e.g. a tensor's .data) must not read as "no difference"
    expect(() => maxAbsDiff({ data: (a as unknown as { data: Float32Array }).data, shape: [2, 2] }, a)).toThrow(/first argument is not an array of 4 values/);
  });
});

describe('Adam on variables', () => {
  it('updates tf.Variables in place exactly like step(), and refuses a non-finite gradient', () => {
    const a = new Adam({ lr: 0.05, clipNorm: 0.5 });
    const b = new Adam({ lr: 0.05, clipNorm: 0.5 });
    const v = { w: tf.variable(tf.tensor1d([1, 2]), true, 'adam-test-w') };
    let p: Record<string, tf.Tensor> = { w: tf.tensor1d([1, 2]) };
    for (const g of [[3, 4], [-0.1, 0.2]]) {
      const n = a.applyToVariables(v, { w: tf.tensor1d(g) });
      expect(n).toBeCloseTo(Math.hypot(g[0]!, g[1]!), 5);
      p = b.step(p, { w: tf.tensor1d(g) });
    }
    Array.from(v.w.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(p.w!.dataSync()[i]!, 6));
    const before = Array.from(v.w.dataSync());
    expect(() => a.applyToVariables(v, { w: tf.tensor1d([NaN, 1]) })).toThrow(/gradient norm is NaN/);
    expect(Array.from(v.w.dataSync())).toEqual(before);
    expect(a.stepCount).toBe(2);
  });
});
