import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxRunner, Rng, gradCheck, initEngine, maxAbsDiff, onnxProto, type Episode, type Params } from '@metalearn/core';
import { EpisodeSampler, SyntheticGlyphs } from '@metalearn/data';
import { MatchingNet, matchingNetConfigSchema, type MatchingNetConfig } from '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

/** Exposes the learner's episode loss as a function of an explicit parameter map. */
class Probe extends MatchingNet {
  loss(p: Params, ep: Episode): tf.Scalar {
    const embed = (x: tf.Tensor) => this.backbone.apply(p, x, { training: false, state: this.buffers }) as tf.Tensor2D;
    return this.episodeForward(p, ep, { embed, rng: new Rng('probe') }).loss;
  }
}

const base = {
  optimizer: { lr: 0.003, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
  lrSchedule: { every: 0, factor: 0.5 },
  attentionScale: 1,
};

/** A tiny 3-way 2-shot episode of random 6-d features (query: 2 per class). */
function tinyEpisode(seed: string): Episode {
  const rng = new Rng(seed);
  const mk = (n: number) => tf.tensor2d(rng.normalArray(n * 6), [n, 6]);
  const ep: Episode = {
    ways: 3,
    shots: 2,
    support: { x: mk(6), y: Int32Array.from([0, 1, 2, 0, 1, 2]) },
    query: { x: mk(6), y: Int32Array.from([2, 1, 0, 0, 1, 2]) },
  };
  ep.dispose = () => tf.dispose([ep.support.x, ep.query.x]);
  return ep;
}

describe('Matching Networks with full-context embeddings', () => {
  const glyphs = new SyntheticGlyphs({ numClasses: 60, itemsPerClass: 8 });
  const convCfg: MatchingNetConfig = { ...base, backbone: { type: 'conv4', filters: 8 }, fce: true, fceSteps: 3 };
  const ctx = { inputShape: [...glyphs.featureShape], seed: 11 };

  it('config schema: fce defaults off, fceSteps is a positive integer', () => {
    const p = matchingNetConfigSchema.properties;
    expect(p.fce.default).toBe(false);
    expect(p.fceSteps.type).toBe('integer');
    expect(p.fceSteps.minimum).toBe(1);
    expect(() => new MatchingNet({ ...base, backbone: { type: 'mlp', hidden: [4] }, fce: true, fceSteps: 0 }, { inputShape: [6], seed: 1 })).toThrow(/fceSteps/);
  });

  it('the FCE loss gradient (tfjs tape) matches finite differences', () => {
    const learner = new Probe({ ...base, backbone: { type: 'mlp', hidden: [5] }, fce: true, fceSteps: 3 }, { inputShape: [6], seed: 5 });
    const ep = tinyEpisode('fce-grad');
    const names = Object.keys(learner.parameters).sort();
    const fceNames = names.filter((k) => k.startsWith('fce.'));
    expect(fceNames).toEqual([
      'fce.att.bias',
      'fce.att.weight_hh',
      'fce.att.weight_ih',
      'fce.g_bwd.bias',
      'fce.g_bwd.weight_hh',
      'fce.g_bwd.weight_ih',
      'fce.g_fwd.bias',
      'fce.g_fwd.weight_hh',
      'fce.g_fwd.weight_ih',
    ]);
    const lossOf = (keys: string[]) => (ps: readonly tf.Tensor[]) => {
      const p: Params = { ...learner.parameters };
      keys.forEach((k, i) => (p[k] = ps[i]!));
      return learner.loss(p, ep);
    };
    // every FCE tensor gets a non-zero gradient (the encoders are on the loss path)
    const grads = tf.tidy(() => tf.grads((...ps: tf.Tensor[]) => lossOf(fceNames)(ps))(fceNames.map((k) => learner.parameters[k]!)));
    grads.forEach((g, i) => expect(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!), fceNames[i]).toBeGreaterThan(1e-6));
    tf.dispose(grads);
    // directional derivatives vs central differences: FCE parameters alone, then everything
    for (const keys of [fceNames, names]) {
      const rows = gradCheck(lossOf(keys), keys.map((k) => learner.parameters[k]!), { rng: new Rng(`fd/${keys.length}`), eps: 1e-3, directions: 3, secondOrder: false });
      expect(rows.length).toBe(3);
      for (const r of rows) {
        expect(Math.abs(r.numeric)).toBeGreaterThan(1e-4);
        expect(r.relErr, `analytic ${r.analytic} vs numeric ${r.numeric}`).toBeLessThan(1e-2);
      }
    }
    ep.dispose!();
    learner.dispose();
  });

  it('the adapted classifier exported to ONNX (attention LSTM in the graph) matches tfjs within 1e-4', async () => {
    const train = new EpisodeSampler(glyphs, 'train', { ways: 5, shots: 1, queries: 2 }, 'fce-onnx');
    const test = new EpisodeSampler(glyphs, 'test', { ways: 5, shots: 2, queries: 4 }, 'fce-onnx');
    const learner = new MatchingNet(convCfg, ctx);
    for (let i = 0; i < 3; i++) {
      const ep = train.episode(i);
      expect(Number.isFinite(learner.metaTrainStep([ep]).loss)).toBe(true);
      ep.dispose!();
    }
    const ep = test.episode(0);
    const clf = learner.adapt(ep.support, ep.ways);
    const onnx = clf.toOnnx();
    const graph = onnxProto.ModelProto.decode(onnx.bytes).graph!;
    const ops = graph.node!.map((n) => n.opType);
    // K = 3 attention steps, each with one LSTM cell (3 Sigmoid gates) and one support read (Softmax),
    // plus the read-out softmax
    expect(ops.filter((o) => o === 'Sigmoid').length).toBe(9);
    expect(ops.filter((o) => o === 'Softmax').length).toBe(4);
    const inits = graph.initializer!.map((t) => t.name);
    expect(inits).toContain('head.att.weight_hh');
    const runner = await OnnxRunner.create(onnx);
    try {
      for (const x of [ep.query.x, tf.slice(ep.query.x, [0, 0, 0, 0], [1, -1, -1, -1])]) {
        const want = clf.predict(x);
        const got = await runner.run(x.dataSync() as Float32Array, [...x.shape]);
        expect(got.shape).toEqual([x.shape[0], 5]);
        const d = maxAbsDiff(got, want);
        expect(d).toBeLessThanOrEqual(1e-4);
        // log-probabilities: each row sums to 1 in probability space
        const sums = tf.tidy(() => tf.sum(tf.exp(want), 1).dataSync());
        for (const s of sums) expect(s).toBeCloseTo(1, 4);
        want.dispose();
        if (x !== ep.query.x) x.dispose();
      }
    } finally {
      await runner.release();
    }
    // FCE changes the classifier: the same support without FCE gives other outputs
    const plain = new MatchingNet({ ...convCfg, fce: false }, ctx);
    const c2 = plain.adapt(ep.support, ep.ways);
    expect(ops.length).toBeGreaterThan(onnxProto.ModelProto.decode(c2.toOnnx().bytes).graph!.node!.length + 30);
    c2.dispose();
    plain.dispose();
    clf.dispose();
    ep.dispose!();
    learner.dispose();
  });

  it('checkpoint round trip keeps the FCE parameters; fce on/off mismatches are refused', () => {
    const train = new EpisodeSampler(glyphs, 'train', { ways: 5, shots: 1, queries: 2 }, 'fce-ckpt');
    const a = new MatchingNet(convCfg, ctx);
    const e0 = train.episode(0);
    a.metaTrainStep([e0]);
    e0.dispose!();
    const saved = JSON.parse(JSON.stringify(a.state()));
    expect(saved.meta.fce).toBe(true);
    expect(Object.keys(saved.params).filter((k) => k.startsWith('fce.')).length).toBe(9);
    const b = new MatchingNet(convCfg, { ...ctx, seed: 99 });
    b.load(saved);
    for (const [k, t] of Object.entries(a.parameters)) expect(maxAbsDiff(t, b.parameters[k]!), k).toBe(0);
    const e1 = train.episode(1);
    expect(b.metaTrainStep([e1]).loss).toBe(a.metaTrainStep([e1]).loss);
    e1.dispose!();
    // mismatches
    const plain = new MatchingNet({ ...convCfg, fce: false }, ctx);
    expect(() => plain.load(saved)).toThrow(/fce: true/);
    const plainSaved = JSON.parse(JSON.stringify(plain.state()));
    delete plainSaved.meta.fce; // as written before FCE existed
    delete plainSaved.meta.fceSteps;
    const plain2 = new MatchingNet({ ...convCfg, fce: false }, { ...ctx, seed: 3 });
    plain2.load(plainSaved); // old checkpoints still load
    for (const [k, t] of Object.entries(plain.parameters)) expect(maxAbsDiff(t, plain2.parameters[k]!), k).toBe(0);
    expect(() => b.load(plainSaved)).toThrow(/fce: false/);
    for (const l of [a, b, plain, plain2]) l.dispose();
  });

  it('trains on synthetic glyphs: the episode loss goes down', () => {
    const train = new EpisodeSampler(glyphs, 'train', { ways: 5, shots: 1, queries: 3 }, 'fce-train');
    const learner = new MatchingNet({ ...convCfg, backbone: { type: 'conv4', filters: 16 } }, ctx);
    const losses: number[] = [];
    let t1 = 0;
    for (let i = 0; i < 40; i++) {
      const ep = train.episode(i);
      losses.push(learner.metaTrainStep([ep]).loss);
      ep.dispose!();
      if (i === 0) t1 = tf.memory().numTensors; // params + Adam moments exist from here on
    }
    expect(tf.memory().numTensors).toBe(t1); // no tensor leaks in the FCE training step
    // nor in adapt / predict / export / dispose
    const ep = train.episode(99);
    const t2 = tf.memory().numTensors;
    const clf = learner.adapt(ep.support, ep.ways);
    clf.predict(ep.query.x).dispose();
    clf.toOnnx();
    clf.dispose();
    expect(tf.memory().numTensors).toBe(t2);
    ep.dispose!();
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(losses.every(Number.isFinite)).toBe(true);
    // (cosine attention at scale 1 bounds how low the loss can go: at best ≈ 0.9 for 5 ways with
    // non-negative embeddings; the start is ln 5 ≈ 1.61)
    expect(mean(losses.slice(-10))).toBeLessThan(0.88 * mean(losses.slice(0, 10)));
    learner.dispose();
  });
});
