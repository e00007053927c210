import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxRunner, accuracy, argmaxRows, initEngine, maxAbsDiff } from '@metalearn/core';
import { EpisodeSampler, SyntheticGlyphs } from '@metalearn/data';
import { ProtoNet, type ProtoNetConfig } from '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

const cfg: ProtoNetConfig = {
  backbone: { type: 'conv4', filters: 16 },
  optimizer: { lr: 0.002, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
  lrSchedule: { every: 0, factor: 0.5 },
  distance: 'sqeuclidean',
  cosineScale: 10,
};

describe('ProtoNet on synthetic glyphs (wasm, Conv-4)', () => {
  it('training loss goes down; the exported adapted model matches tfjs in onnxruntime', async () => {
    const ds = new SyntheticGlyphs({ numClasses: 100, itemsPerClass: 10 });
    const train = new EpisodeSampler(ds, 'train', { ways: 10, shots: 1, queries: 3 }, 'glyph-test');
    const test = new EpisodeSampler(ds, 'test', { ways: 5, shots: 1, queries: 5 }, 'glyph-test');
    const learner = new ProtoNet(cfg, { inputShape: [...ds.featureShape], seed: 3 });
    const losses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const ep = train.episode(i);
      losses.push(learner.metaTrainStep([ep]).loss);
      ep.dispose!();
    }
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(losses.slice(-10))).toBeLessThan(0.75 * mean(losses.slice(0, 10)));

    let tfCorrect = 0;
    let ortCorrect = 0;
    let worst = 0;
    for (let i = 0; i < 4; i++) {
      const ep = test.episode(i);
      const clf = learner.adapt(ep.support, ep.ways);
      const logits = clf.predict(ep.query.x);
      const runner = await OnnxRunner.create(clf.toOnnx());
      const got = await runner.run(ep.query.x.dataSync() as Float32Array, [...ep.query.x.shape]);
      await runner.release();
      const want = { data: logits.dataSync() as Float32Array, shape: [...logits.shape] };
      worst = Math.max(worst, maxAbsDiff(got, want));
      const n = ep.query.y.length;
      tfCorrect += accuracy(argmaxRows(want.data, n, 5), ep.query.y) * n;
      ortCorrect += accuracy(argmaxRows(got.data, n, 5), ep.query.y) * n;
      logits.dispose();
      clf.dispose();
      ep.dispose!();
    }
    expect(worst).toBeLessThanOrEqual(1e-4);
    expect(ortCorrect).toBe(tfCorrect);
    expect(tfCorrect / 100).toBeGreaterThan(0.4); // well above 20% chance after 40 steps
    learner.dispose();
  });
});
