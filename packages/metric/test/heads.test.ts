import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxRunner, Sequential, Dense, initEngine, maxAbsDiff, exportOnnx, Rng, getLearner, type Episode } from '@metalearn/core';
import { ProtoNet, MatchingNet, matchingHead, matchingLogProbs, l2normalize, oneHot, prototypeHead, prototypeLogits, prototypes, protoNetFactory } from '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'cpu', quiet: true });
});

describe('prototypes and distances', () => {
  it('prototypes are class means; logits are −squared distances', () => {
    const emb = tf.tensor2d([
      [0, 0],
      [2, 0],
      [0, 4],
      [1, 1],
      [3, 3],
    ]);
    const y = Int32Array.from([0, 0, 1, 1, 2]);
    const p = prototypes(emb, y, 3);
    expect(Array.from(p.dataSync())).toEqual([1, 0, 0.5, 2.5, 3, 3]);
    const q = tf.tensor2d([[1, 1]]);
    const logits = prototypeLogits(q, p, 'sqeuclidean');
    const d = Array.from(logits.dataSync());
    expect(d[0]).toBeCloseTo(-1, 6); // (0)^2 + (1)^2
    expect(d[1]).toBeCloseTo(-(0.25 + 2.25), 6);
    expect(d[2]).toBeCloseTo(-(4 + 4), 6);
    const cos = prototypeLogits(q, p, 'cosine', 2).dataSync();
    expect(cos[2]).toBeCloseTo(2, 5); // [1,1] and [3,3] are parallel
    expect(cos[0]).toBeCloseTo(2 * Math.SQRT1_2, 5);
    tf.dispose([emb, p, q, logits]);
  });

  it('rejects labels outside 0..ways-1 and empty classes', () => {
    const emb = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => prototypes(emb, Int32Array.from([0, 2]), 2)).toThrow(/label 2 is outside 0..1/);
    expect(() => prototypes(emb, Int32Array.from([0, 0]), 2)).toThrow(/class 1 has no support example/);
    emb.dispose();
  });

  it('matching read-out is the attention-weighted label distribution', () => {
    const s = l2normalize(tf.tensor2d([[1, 0], [0, 1], [1, 1]]));
    const y = oneHot(Int32Array.from([0, 1, 1]), 2);
    const q = tf.tensor2d([[2, 0]]);
    const lp = Array.from(matchingLogProbs(q, s, y).dataSync());
    const a = [Math.exp(1), Math.exp(0), Math.exp(Math.SQRT1_2)];
    const z = a[0]! + a[1]! + a[2]!;
    expect(Math.exp(lp[0]!)).toBeCloseTo(a[0]! / z, 5);
    expect(Math.exp(lp[1]!)).toBeCloseTo((a[1]! + a[2]!) / z, 5);
  });
});

describe('head layers export to ONNX', () => {
  const cases = [
    { name: 'prototype sqeuclidean', head: () => prototypeHead({ ways: 3, distance: 'sqeuclidean' }), p: (rng: Rng) => ({ 'head.prototypes': tf.tensor2d(rng.normalArray(3 * 4), [3, 4]) }) },
    { name: 'prototype cosine', head: () => prototypeHead({ ways: 3, distance: 'cosine', scale: 10 }), p: (rng: Rng) => ({ 'head.prototypes': tf.tensor2d(rng.normalArray(3 * 4), [3, 4]) }) },
    {
      name: 'matching',
      head: () => matchingHead({ ways: 3, scale: 5 }),
      p: (rng: Rng) => ({ 'head.support': l2normalize(tf.tensor2d(rng.normalArray(6 * 4), [6, 4])), 'head.labels': oneHot(Int32Array.from([0, 1, 2, 0, 1, 2]), 3) }),
    },
  ];
  for (const c of cases) {
    it(`${c.name}: onnxruntime matches tfjs`, async () => {
      const rng = new Rng(7);
      const model = new Sequential([new Dense({ name: 'fc', units: 4 }), c.head()], [5]);
      const params = { ...model.layers[0]!.init(rng, [5]), ...c.p(rng) };
      const flat = { 'fc.weight': params['weight']!, 'fc.bias': params['bias']!, ...Object.fromEntries(Object.entries(params).filter(([k]) => k.startsWith('head.'))) };
      const x = tf.tensor2d(rng.normalArray(7 * 5), [7, 5]);
      const want = model.apply(flat, x);
      const onnx = exportOnnx(model, flat);
      const runner = await OnnxRunner.create(onnx);
      const got = await runner.run(x.dataSync() as Float32Array, [7, 5]);
      await runner.release();
      expect(got.shape).toEqual([7, 3]);
      expect(maxAbsDiff(got, { data: want.dataSync() as Float32Array, shape: [7, 3] })).toBeLessThanOrEqual(1e-4);
    });
  }
});

/** Separable toy task: class c lives around a random centre in R^8. */
function toyEpisode(rng: Rng, ways: number, shots: number, queries: number, centres: Float32Array): Episode {
  const make = (k: number) => {
    const x = new Float32Array(ways * k * 8);
    const y = new Int32Array(ways * k);
    for (let c = 0; c < ways; c++)
      for (let j = 0; j < k; j++) {
        const i = c * k + j;
        y[i] = c;
        for (let d = 0; d < 8; d++) x[i * 8 + d] = centres[c * 8 + d]! + 0.5 * rng.normal();
      }
    return { x: tf.tensor2d(x, [ways * k, 8]), y };
  };
  const support = make(shots);
  const query = make(queries);
  return { ways, shots, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

describe('learners on a toy task (cpu, mlp backbone)', () => {
  const cfg = (over: object = {}) => ({
    backbone: { type: 'mlp' as const, hidden: [16, 16] },
    optimizer: { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    lrSchedule: { every: 0, factor: 0.5 },
    ...over,
  });

  for (const kind of ['protonet', 'matchingnet'] as const) {
    it(`${kind}: loss goes down, no tensor leaks, state round trip continues identically`, () => {
      const rng = new Rng(3);
      const centres = rng.normalArray(5 * 8, 0, 1.5);
      const learner =
        kind === 'protonet'
          ? new ProtoNet({ ...cfg(), distance: 'sqeuclidean', cosineScale: 10 }, { inputShape: [8], seed: 1 })
          : new MatchingNet({ ...cfg(), attentionScale: 5 }, { inputShape: [8], seed: 1 });
      const losses: number[] = [];
      let t1 = 0;
      for (let i = 0; i < 60; i++) {
        const ep = toyEpisode(rng, 5, 2, 5, centres);
        losses.push(learner.metaTrainStep([ep]).loss);
        ep.dispose!();
        if (i === 0) t1 = tf.memory().numTensors; // params + Adam moments exist from here on
      }
      expect(tf.memory().numTensors).toBe(t1);
      const first = losses.slice(0, 10).reduce((a, b) => a + b) / 10;
      const last = losses.slice(-10).reduce((a, b) => a + b) / 10;
      expect(last).toBeLessThan(first * 0.7);

      // state round trip: a fresh learner loaded from the checkpoint takes the same next step
      const ck = JSON.parse(JSON.stringify(learner.state()));
      const other =
        kind === 'protonet'
          ? new ProtoNet({ ...cfg(), distance: 'sqeuclidean', cosineScale: 10 }, { inputShape: [8], seed: 99 })
          : new MatchingNet({ ...cfg(), attentionScale: 5 }, { inputShape: [8], seed: 99 });
      other.load(ck);
      const epA = toyEpisode(new Rng(5), 5, 2, 5, centres);
      const epB = toyEpisode(new Rng(5), 5, 2, 5, centres);
      const ra = learner.metaTrainStep([epA]);
      const rb = other.metaTrainStep([epB]);
      expect(rb.loss).toBe(ra.loss);
      expect(JSON.stringify(other.state().params)).toBe(JSON.stringify(learner.state().params));
      expect(JSON.stringify(other.state().optimizer)).toBe(JSON.stringify(learner.state().optimizer));
      // adapted classifiers agree and predict well
      const clfA = learner.adapt(epA.support, 5);
      const clfB = other.adapt(epB.support, 5);
      const la = clfA.predict(epA.query.x);
      const lb = clfB.predict(epB.query.x);
      expect(Array.from(lb.dataSync())).toEqual(Array.from(la.dataSync()));
      tf.dispose([la, lb]);
      clfA.dispose();
      clfB.dispose();
      epA.dispose!();
      epB.dispose!();
      learner.dispose();
      other.dispose();
    });
  }

  it('a non-finite loss leaves parameters untouched and reports NaN', () => {
    const learner = new ProtoNet({ ...cfg(), distance: 'sqeuclidean', cosineScale: 10 }, { inputShape: [8], seed: 1 });
    const before = JSON.stringify(learner.state().params);
    const rng = new Rng(1);
    const ep = toyEpisode(rng, 3, 1, 2, rng.normalArray(3 * 8));
    const bad = tf.fill(ep.query.x.shape, NaN);
    ep.query.x.dispose();
    const r = learner.metaTrainStep([{ ...ep, query: { x: bad, y: ep.query.y } }]);
    expect(Number.isNaN(r.loss)).toBe(true);
    expect(JSON.stringify(learner.state().params)).toBe(before);
    tf.dispose([bad, ep.support.x]);
    learner.dispose();
  });

  it('registers factories with JSON Schema configs', () => {
    expect(getLearner('protonet')).toBe(protoNetFactory);
    expect(getLearner('matchingnet').family).toBe('metric');
    expect((protoNetFactory.configSchema as { properties: Record<string, unknown> }).properties).toHaveProperty('backbone');
  });
});
