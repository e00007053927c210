import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@metalearn/core';
import { contentWeights, cosineSimilarity, leastUsed, lruaWriteWeights, readMemory, updateUsage, writeMemory, MannModel, runSequence, sequenceLoss, buildBatch } from '@metalearn/memory';
import { useCpu } from './helpers.js';

beforeAll(useCpu);

const arr = (t: tf.Tensor) => Array.from(t.dataSync());

describe('MANN addressing math', () => {
  it('cosine similarity of keys with memory rows', () => {
    const keys = tf.tensor3d([[[1, 0], [0, 2]]]); // B=1, R=2, M=2
    const mem = tf.tensor3d([[[1, 0], [0, 1], [1, 1], [-3, 0]]]); // N=4
    const s = arr(cosineSimilarity(keys, mem));
    const r2 = Math.SQRT1_2;
    const want = [1, 0, r2, -1, 0, 1, r2, 0];
    s.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
  });

  it('content weights are a softmax of strength · cosine', () => {
    const keys = tf.tensor3d([[[1, 0]]]);
    const mem = tf.tensor3d([[[1, 0], [0, 1]]]);
    const w = arr(contentWeights(keys, mem, tf.tensor2d([[2]])));
    const e = [Math.exp(2), Math.exp(0)];
    expect(w[0]).toBeCloseTo(e[0]! / (e[0]! + e[1]!), 5);
    expect(w[1]).toBeCloseTo(e[1]! / (e[0]! + e[1]!), 5);
  });

  it('least-used slots: one-hot rows in order of increasing usage', () => {
    const u = tf.tensor2d([[0.5, 0.1, 0.3, 0.2], [0, 3, 2, 1]]);
    expect(arr(leastUsed(u, 2))).toEqual([0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1]);
    expect(arr(leastUsed(u, 1))).toEqual([0, 1, 0, 0, 1, 0, 0, 0]);
    expect(() => leastUsed(u, 5)).toThrow(/n must be an integer in \[1, 4\]/);
  });

  it('LRUA write weights interpolate previous reads and least-used slots', () => {
    const alpha = tf.tensor2d([[0, 100]]); // σ = 0.5, ≈1
    const prevRead = tf.tensor3d([[[0.2, 0.8, 0], [1, 0, 0]]]);
    const lu = tf.tensor3d([[[0, 0, 1], [0, 1, 0]]]);
    const w = arr(lruaWriteWeights(alpha, prevRead, lu));
    [0.1, 0.4, 0.5, 1, 0, 0].forEach((v, i) => expect(w[i]).toBeCloseTo(v, 5));
  });

  it('write zeroes the erased slot, then adds weighted keys; read and usage update', () => {
    const mem = tf.tensor3d([[[1, 1], [2, 2], [3, 3]]]);
    const prevUsage = tf.tensor2d([[0.9, 0.1, 0.5]]);
    const erase = tf.reshape(leastUsed(prevUsage, 1), [1, 3]) as tf.Tensor2D; // slot 1
    const ww = tf.tensor3d([[[0, 1, 0]]]); // one head writes fully to slot 1
    const keys = tf.tensor3d([[[5, -5]]]);
    const m = writeMemory(mem, erase, ww, keys);
    expect(arr(m)).toEqual([1, 1, 5, -5, 3, 3]);
    const r = readMemory(tf.tensor3d([[[0.5, 0.5, 0]]]), m);
    expect(arr(r)).toEqual([3, -2]);
    const u = updateUsage(prevUsage, tf.tensor3d([[[0.5, 0.5, 0]]]), ww, 0.5);
    [0.45 + 0.5, 0.05 + 1.5, 0.25].forEach((v, i) => expect(arr(u)[i]).toBeCloseTo(v, 5));
  });

  it('keyStrengthInit: every head starts at the given key strength', () => {
    const model = new MannModel(3, 2, { controllerSize: 4, memorySlots: 5, memoryWidth: 3, readHeads: 2, gamma: 0.9, keyStrength: true, keyStrengthInit: 10 });
    const b = model.init(new Rng(7))['beta.bias']!;
    const beta = Array.from(tf.tidy(() => tf.add(1, tf.softplus(b))).dataSync());
    expect(beta).toHaveLength(2);
    for (const v of beta) expect(v).toBeCloseTo(10, 4);
  });

  it('gradient of the sequence loss matches finite differences', () => {
    const model = new MannModel(3, 2, { controllerSize: 4, memorySlots: 5, memoryWidth: 3, readHeads: 2, gamma: 0.9, keyStrength: true });
    const params = model.init(new Rng(7));
    const rng = new Rng(3);
    // short sequences: the least-used ranking is piecewise constant in the parameters and longer
    // sequences make near-ties (where a finite-difference step crosses a switch) likely
    const xs = [tf.tensor2d(rng.normalArray(3 * 3), [3, 3]), tf.tensor2d(rng.normalArray(3 * 3), [3, 3])];
    const batch = buildBatch(xs, [[0, 1, 1], [1, 0, 0]], 2);
    const lossOf = (p: Record<string, tf.Tensor>) => sequenceLoss(runSequence(model, p, batch.x, batch.yPrev).logits, batch.target);
    const names = Object.keys(params).sort();
    let g: tf.Tensor[] = [];
    try {
      g = tf.grads((...ts: tf.Tensor[]) => lossOf(Object.fromEntries(names.map((n, i) => [n, ts[i]!]))))(names.map((n) => params[n]!));
    } catch (e) {
      throw new Error(`grads: ${(e as Error).stack}`);
    }
    // small step: the least-used ranking is piecewise constant, a large step can cross a switch
    const h = 2e-3;
    let checked = 0;
    for (const [pi, name] of names.entries()) {
      const base = params[name]!.dataSync().slice();
      const gv = g[pi]!.dataSync();
      for (const j of [0, Math.floor(base.length / 2), base.length - 1]) {
        const plus = base.slice();
        plus[j]! += h;
        const minus = base.slice();
        minus[j]! -= h;
        const lp = lossOf({ ...params, [name]: tf.tensor(plus, params[name]!.shape) }).dataSync()[0]!;
        const lm = lossOf({ ...params, [name]: tf.tensor(minus, params[name]!.shape) }).dataSync()[0]!;
        const fd = (lp - lm) / (2 * h);
        expect(Math.abs(fd - gv[j]!), `${name}[${j}] fd=${fd} grad=${gv[j]}`).toBeLessThan(1e-3 + 0.05 * Math.abs(fd));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
  });
});
