import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxRunner, Rng, getLearner, initEngine, maxAbsDiff, type Episode } from '@metalearn/core';
import { TapNet, TapNetEncoder, attentionalPrototypes, prototypeSeparation, tapNetFactory, tapnetGroups, type TapNetConfig } from '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

const C = 3;

const cfg = (over: Partial<TapNetConfig> = {}, lstmUnits = 0): TapNetConfig => ({
  optimizer: { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
  lrSchedule: { every: 0, factor: 0.5 },
  encoder: { groups: 2, groupRatio: 0.67, groupSeed: 0, filters: [8, 8], kernelSizes: [5, 3], lstmUnits, leakyAlpha: 0.01 },
  mapping: [16, 8],
  attentionUnits: 8,
  protoLoss: 0.01,
  ...over,
});

/**
 * Synthetic multivariate series: class k has one frequency per channel (drawn from Rng(class k));
 * an example is sin(2π f t / 16 + random phase) per channel plus noise, of length `len`.
 */
function series(cls: number, len: number, rng: Rng): Float32Array {
  const fr = new Rng(`freq/${cls}`);
  const f = Array.from({ length: C }, () => fr.uniform(0.5, 4));
  const x = new Float32Array(len * C);
  for (let c = 0; c < C; c++) {
    const ph = rng.uniform(0, 2 * Math.PI);
    for (let t = 0; t < len; t++) x[t * C + c] = Math.sin((2 * Math.PI * f[c]! * t) / 16 + ph) + 0.3 * rng.normal();
  }
  return x;
}

function episode(rng: Rng, classes: number[], shots: number, queries: number, len: number, queryLen = len): Episode {
  const make = (k: number, L: number) => {
    const x = new Float32Array(classes.length * k * L * C);
    const y = new Int32Array(classes.length * k);
    classes.forEach((cls, c) => {
      for (let j = 0; j < k; j++) {
        x.set(series(cls, L, rng), (c * k + j) * L * C);
        y[c * k + j] = c;
      }
    });
    return { x: tf.tensor3d(x, [classes.length * k, L, C]), y };
  };
  const support = make(shots, len);
  const query = make(queries, queryLen);
  return { ways: classes.length, shots, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

const trainEpisode = (rng: Rng) => episode(rng, rng.sample(30, 3), 3, 4, 24 + rng.int(17));

describe('TapNet pieces', () => {
  it('channel groups come from the group seed; attentional prototypes are convex combinations within a class', () => {
    expect(tapnetGroups(6, 3, 0.667, 0)).toEqual(tapnetGroups(6, 3, 0.667, 0));
    expect(tapnetGroups(6, 3, 0.667, 0).every((g) => g.length === 4 && new Set(g).size === 4)).toBe(true);
    expect(tapnetGroups(6, 3, 0.667, 1)).not.toEqual(tapnetGroups(6, 3, 0.667, 0));
    const es = tf.tensor2d([
      [0, 0],
      [2, 0],
      [5, 5],
    ]);
    const rng = new Rng(2);
    const w1 = tf.tensor2d(rng.normalArray(2 * 3), [2, 3]);
    const b1 = tf.tensor1d(rng.normalArray(3));
    const w2 = tf.tensor1d(rng.normalArray(3));
    const p = attentionalPrototypes(es, Int32Array.from([0, 0, 1]), 2, w1, b1, w2).arraySync();
    // class 0: a·[0,0] + (1−a)·[2,0] with a in (0, 1); class 1: its single example
    expect(p[0]![1]).toBeCloseTo(0, 6);
    expect(p[0]![0]).toBeGreaterThan(0);
    expect(p[0]![0]).toBeLessThan(2);
    const score = (e: number[]) => [0, 1, 2].reduce((a, j) => a + w2.arraySync()[j]! * Math.tanh(e[0]! * w1.arraySync()[0]![j]! + e[1]! * w1.arraySync()[1]![j]! + b1.arraySync()[j]!), 0);
    const a0 = Math.exp(score([0, 0]));
    const a1 = Math.exp(score([2, 0]));
    expect(p[0]![0]).toBeCloseTo((2 * a1) / (a0 + a1), 5);
    expect(p[1]).toEqual([5, 5]);
    const sep = prototypeSeparation(tf.tensor2d([[0, 0], [1, 0], [0, 2]])).dataSync()[0]!;
    expect(sep).toBeCloseTo((2 * Math.exp(-0.5) + 2 * Math.exp(-2) + 2 * Math.exp(-2.5)) / 6, 6);
    tf.dispose([es, w1, b1, w2]);
  });
});

describe('TapNet on synthetic multivariate series (wasm)', () => {
  it('loss goes down and accuracy on new classes is above chance; unequal lengths across episodes', () => {
    const learner = new TapNet(cfg(), { inputShape: [-1, C], seed: 1 });
    const rng = new Rng(3);
    const losses: number[] = [];
    let t1 = 0;
    for (let i = 0; i < 60; i++) {
      const ep = trainEpisode(rng);
      losses.push(learner.metaTrainStep([ep]).loss);
      ep.dispose!();
      if (i === 0) t1 = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(t1);
    const first = losses.slice(0, 10).reduce((a, b) => a + b) / 10;
    const last = losses.slice(-10).reduce((a, b) => a + b) / 10;
    expect(last).toBeLessThan(first * 0.7);
    // evaluation: 10 episodes of unseen classes (100..139), query length different from support length
    const er = new Rng(9);
    let correct = 0;
    let total = 0;
    for (let e = 0; e < 10; e++) {
      const ep = episode(er, er.sample(40, 3).map((c) => 100 + c), 3, 5, 32, 48);
      const clf = learner.adapt(ep.support, 3);
      const pred = tf.tidy(() => tf.argMax(clf.predict(ep.query.x), 1).dataSync());
      pred.forEach((p, i) => (correct += p === ep.query.y[i] ? 1 : 0));
      total += pred.length;
      clf.dispose();
      ep.dispose!();
    }
    expect(correct / total).toBeGreaterThan(0.6); // chance: 1/3
    learner.dispose();
  });

  it('adapted classifier (with LSTM branch): ONNX parity at two lengths from one export', async () => {
    const learner = new TapNet(cfg({}, 4), { inputShape: [-1, C], seed: 2 });
    const rng = new Rng(4);
    for (let i = 0; i < 20; i++) {
      const ep = trainEpisode(rng);
      learner.metaTrainStep([ep]);
      ep.dispose!();
    }
    expect(learner.backbone.layers[0]).toBeInstanceOf(TapNetEncoder);
    const ep = episode(rng, [1, 2, 3, 4], 2, 2, 30, 30);
    const clf = learner.adapt(ep.support, 4);
    const runner = await OnnxRunner.create(clf.toOnnx());
    for (const len of [30, 51]) {
      const q = episode(rng, [1, 2, 3, 4], 1, 2, len);
      const want = clf.predict(q.query.x);
      expect(want.shape).toEqual([8, 4]);
      const got = await runner.run(q.query.x.dataSync() as Float32Array, [...q.query.x.shape]);
      expect(got.shape).toEqual([8, 4]);
      expect(maxAbsDiff(got, { data: want.dataSync() as Float32Array, shape: [8, 4] })).toBeLessThanOrEqual(1e-4);
      // the logits are not degenerate (−squared distances of order 1 or more), so the comparison means something
      expect(Math.max(...Array.from(want.dataSync()).map(Math.abs))).toBeGreaterThan(0.1);
      want.dispose();
      q.dispose!();
    }
    await runner.release();
    clf.dispose();
    ep.dispose!();
    learner.dispose();
  });

  it('state round trip: a loaded learner takes the identical next step; mismatched groups are refused', () => {
    const a = new TapNet(cfg({}, 4), { inputShape: [-1, C], seed: 5 });
    const rng = new Rng(6);
    for (let i = 0; i < 2; i++) {
      const ep = trainEpisode(rng);
      a.metaTrainStep([ep]);
      ep.dispose!();
    }
    const ck = JSON.parse(JSON.stringify(a.state()));
    const b = new TapNet(cfg({}, 4), { inputShape: [-1, C], seed: 77 });
    b.load(ck);
    const ep = trainEpisode(rng);
    const ra = a.metaTrainStep([ep]);
    const rb = b.metaTrainStep([ep]);
    expect(rb.loss).toBe(ra.loss);
    expect(JSON.stringify(b.state().params)).toBe(JSON.stringify(a.state().params));
    expect(JSON.stringify(b.state().optimizer)).toBe(JSON.stringify(a.state().optimizer));
    const other = cfg({}, 4);
    other.encoder.groupSeed = 5;
    const c = new TapNet(other, { inputShape: [-1, C], seed: 5 });
    expect(() => c.load(ck)).toThrow(/channel groups .* differ/);
    ep.dispose!();
    [a, b, c].forEach((l) => l.dispose());
  });

  it('is registered; rejects image inputs with a clear error', () => {
    expect(getLearner('tapnet')).toBe(tapNetFactory);
    expect(() => new TapNet(cfg(), { inputShape: [28, 28, 1], seed: 1 })).toThrow(/tapnet needs time-series inputs \[length, channels\]/);
  });
});
