import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxRunner, Rng, getLearner, initEngine, maxAbsDiff, type Episode } from '@metalearn/core';
import { EpisodeSampler, SyntheticGlyphs, materialize } from '@metalearn/data';
import { SiameseNet, affineDistort, classMask, classMaxScores, siameseFactory, weightedL1PairScores, weightedL1Scores, type SiameseConfig } from '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

const cfg = (over: Partial<SiameseConfig> = {}): SiameseConfig => ({
  backbone: { type: 'conv4', filters: 8 },
  optimizer: { lr: 0.003, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
  lrSchedule: { every: 0, factor: 0.5 },
  mode: 'pairs',
  pairsPerEpisode: 16,
  distort: true,
  ...over,
});

describe('weighted L1 head', () => {
  it('z = Σ α_j |q_j − s_j| + β, per-class max over support examples', () => {
    const q = tf.tensor2d([
      [0, 0],
      [1, 2],
    ]);
    const s = tf.tensor2d([
      [1, 0],
      [0, 3],
      [2, 2],
    ]);
    const alpha = tf.tensor1d([-1, -0.5]);
    const bias = tf.scalar(2);
    const z = weightedL1Scores(q, s, alpha, bias);
    // q0: s0 |1|,|0| → −1+2 = 1; s1 |0|,|3| → −1.5+2 = 0.5; s2 |2|,|2| → −2−1+2 = −1
    // q1: s0 |0|,|2| → −1+2 = 1; s1 |1|,|1| → −1−0.5+2 = 0.5; s2 |1|,|0| → −1+2 = 1
    expect(Array.from(z.dataSync())).toEqual([1, 0.5, -1, 1, 0.5, 1]);
    const pairs = weightedL1PairScores(q, tf.tensor2d([[1, 0], [2, 2]]), alpha, bias);
    expect(Array.from(pairs.dataSync())).toEqual([1, 1]);
    // classes: s0 → 1, s1 → 0, s2 → 1
    const mask = classMask(Int32Array.from([1, 0, 1]), 2);
    const logits = classMaxScores(z, mask);
    expect(Array.from(logits.dataSync())).toEqual([0.5, 1, 0.5, 1]);
    expect(() => classMask(Int32Array.from([0, 0]), 2)).toThrow(/class 1 has no support example/);
    expect(() => classMask(Int32Array.from([0, 3]), 2)).toThrow(/label 3 is outside 0..1/);
    tf.dispose([q, s, alpha, bias, z, pairs, mask, logits]);
  });

  it('affine distortion is seed-determined and the identity when no component is drawn', () => {
    const rng = new Rng(1);
    const img = rng.uniformArray(12 * 10 * 2);
    const a = affineDistort(img, 12, 10, 2, new Rng('d'));
    const b = affineDistort(img, 12, 10, 2, new Rng('d'));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(img));
    const id = affineDistort(img, 12, 10, 2, new Rng('d'), { rotation: 10, shear: 0.3, scale: 0.2, translation: 2, p: 0 });
    expect(maxAbsDiff({ data: id, shape: [240] }, { data: img, shape: [240] })).toBeLessThan(1e-6);
  });
});

function glyphEpisodes(seed: number, count: number, spec = { ways: 5, shots: 1, queries: 3 }, size = 28): Episode[] {
  const ds = new SyntheticGlyphs({ numClasses: 60, itemsPerClass: 8, seed: 3, size });
  const sampler = new EpisodeSampler(ds, 'train', spec, seed);
  return Array.from({ length: count }, (_, i) => materialize(ds, sampler.describe(i)));
}

describe('Siamese learner on synthetic glyphs (wasm, Conv-4 with 8 filters)', () => {
  it('episodic: training loss goes down, no tensor leaks', () => {
    const learner = new SiameseNet(cfg({ mode: 'episodic', backbone: { type: 'conv4', filters: 8, blocks: 3 }, optimizer: { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 } }), { inputShape: [14, 14, 1], seed: 1 });
    const eps = glyphEpisodes(7, 8, undefined, 14);
    const losses: number[] = [];
    let t1 = 0;
    for (let i = 0; i < 40; i++) {
      losses.push(learner.metaTrainStep([eps[i % eps.length]!]).loss);
      if (i === 0) t1 = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(t1);
    const first = losses.slice(0, 8).reduce((a, b) => a + b) / 8;
    const last = losses.slice(-8).reduce((a, b) => a + b) / 8;
    expect(last).toBeLessThan(first * 0.85);
    eps.forEach((e) => e.dispose!());
    learner.dispose();
  });

  it('pairs (Koch, distorted): the verification loss on fixed pairs (fixed distortions) goes down, no tensor leaks', () => {
    const learner = new SiameseNet(cfg({ mode: 'pairs', pairsPerEpisode: 64, backbone: { type: 'conv4', filters: 8, blocks: 3 }, optimizer: { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 } }), { inputShape: [14, 14, 1], seed: 1 });
    const eps = glyphEpisodes(7, 8, undefined, 14);
    const fixedLoss = () => eps.slice(0, 4).reduce((a, e, k) => a + learner.pairLoss(e, `fixed/${k}`, 32), 0) / 4;
    const before = fixedLoss();
    let t1 = 0;
    for (let i = 0; i < 45; i++) {
      const r = learner.metaTrainStep([eps[i % eps.length]!]);
      expect(Number.isFinite(r.loss)).toBe(true);
      if (i === 0) t1 = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(t1);
    const after = fixedLoss();
    expect(after).toBeLessThan(before * 0.92);
    eps.forEach((e) => e.dispose!());
    learner.dispose();
  });

  it('adapted classifier: ONNX parity, shapes, per-class max of the support scores', async () => {
    const learner = new SiameseNet(cfg({ mode: 'episodic', optimizer: { lr: 0.02, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 } }), { inputShape: [28, 28, 1], seed: 2 });
    const [ep] = glyphEpisodes(11, 1, { ways: 3, shots: 2, queries: 2 });
    for (let i = 0; i < 8; i++) learner.metaTrainStep([ep!]);
    const clf = learner.adapt(ep!.support, 3);
    const logits = clf.predict(ep!.query.x);
    expect(logits.shape).toEqual([6, 3]);
    // same numbers by hand: embeddings → weighted L1 → per-class max
    const es = learner.embed(ep!.support.x);
    const eq = learner.embed(ep!.query.x);
    const p = learner.parameters;
    const z = weightedL1Scores(eq, es, p['siamese.alpha']!, p['siamese.bias']!).arraySync();
    const want = z.map((row) => [0, 1, 2].map((c) => Math.max(...row.filter((_, j) => ep!.support.y[j] === c))));
    const got = logits.arraySync() as number[][];
    for (let i = 0; i < 6; i++) for (let c = 0; c < 3; c++) expect(got[i]![c]!).toBeCloseTo(want[i]![c]!, 4);
    const onnx = clf.toOnnx();
    const runner = await OnnxRunner.create(onnx);
    const out = await runner.run(ep!.query.x.dataSync() as Float32Array, [...ep!.query.x.shape]);
    await runner.release();
    expect(out.shape).toEqual([6, 3]);
    expect(maxAbsDiff(out, { data: logits.dataSync() as Float32Array, shape: [6, 3] })).toBeLessThanOrEqual(1e-4);
    expect(Math.max(...Array.from(logits.dataSync()).map(Math.abs))).toBeGreaterThan(0.05);
    tf.dispose([logits, es, eq]);
    clf.dispose();
    ep!.dispose!();
    learner.dispose();
  });

  it('state round trip: a loaded learner takes the identical next step (pairs, distortion rng included)', () => {
    const a = new SiameseNet(cfg(), { inputShape: [28, 28, 1], seed: 4 });
    const eps = glyphEpisodes(5, 3);
    a.metaTrainStep([eps[0]!]);
    a.metaTrainStep([eps[1]!]);
    const ck = JSON.parse(JSON.stringify(a.state()));
    const b = new SiameseNet(cfg(), { inputShape: [28, 28, 1], seed: 99 });
    b.load(ck);
    const ra = a.metaTrainStep([eps[2]!]);
    const rb = b.metaTrainStep([eps[2]!]);
    expect(rb.loss).toBe(ra.loss);
    expect(JSON.stringify(b.state())).toBe(JSON.stringify({ ...a.state(), meta: { ...a.state().meta, seed: 99 } }));
    // wrong checkpoints are refused with a clear message
    const c = new SiameseNet(cfg({ backbone: { type: 'conv4', filters: 4 } }), { inputShape: [28, 28, 1], seed: 4 });
    expect(() => c.load(ck)).toThrow(/siamese.load: checkpoint does not fit this learner: head parameter 'siamese.alpha' has shape \[8\], expected \[4\]/);
    expect(() => c.load({ ...ck, learner: 'protonet' })).toThrow(/checkpoint is for learner 'protonet'/);
    eps.forEach((e) => e.dispose!());
    [a, b, c].forEach((l) => l.dispose());
  });

  it('is registered with a JSON Schema; pairs mode needs an episode with a same-class pair', () => {
    expect(getLearner('siamese')).toBe(siameseFactory);
    expect((siameseFactory.configSchema as { properties: Record<string, unknown> }).properties['mode']).toBeTruthy();
    const l = new SiameseNet(cfg({ backbone: { type: 'mlp', hidden: [8] } }), { inputShape: [4], seed: 1 });
    const x = tf.zeros([2, 4]);
    const ep: Episode = { ways: 2, shots: 1, support: { x, y: Int32Array.from([0, 1]) }, query: { x: tf.zeros([0, 4]), y: new Int32Array(0) } };
    expect(() => l.metaTrainStep([ep])).toThrow(/no class of the episode has two examples/);
    tf.dispose([x, ep.query.x]);
    l.dispose();
  });
});
