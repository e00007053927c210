import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, getLearner, verifyOnnx, type Episode } from '@metalearn/core';
import { OPTIM_ALGORITHMS, disposeParams, innerLoop, type OptimLearner, type Params } from '../src/index.js';
import { useCpu } from './helpers.js';

beforeAll(useCpu);

const WAYS = 3;
const DIM = 6;

/**
 * Few-shot classification episodes: WAYS of 8 concepts (points on a circle in the first two input
 * dimensions), labels in random order; the other dimensions are loud noise. Meta-learning can learn
 * to ignore the noise; a random initialisation cannot, so adaptation gets better with meta-training.
 */
function episode(rng: Rng, shots: number, queries: number): Episode {
  const concepts = rng.sample(8, WAYS);
  const means = concepts.map((c) => [2 * Math.cos((2 * Math.PI * c) / 8), 2 * Math.sin((2 * Math.PI * c) / 8)]);
  const draw = (per: number) => {
    const x: number[] = [];
    const y: number[] = [];
    for (let c = 0; c < WAYS; c++)
      for (let i = 0; i < per; i++) {
        x.push(...means[c]!.map((m) => m + rng.normal(0, 0.3)));
        for (let d = 2; d < DIM; d++) x.push(rng.normal(0, 2));
        y.push(c);
      }
    return { x: tf.tensor2d(x, [WAYS * per, DIM]), y: Int32Array.from(y) };
  };
  return { ways: WAYS, shots, support: draw(shots), query: draw(queries) };
}

function disposeEp(e: Episode) {
  e.support.x.dispose();
  e.query.x.dispose();
}

const base = { backbone: { type: 'mlp', hidden: [16] }, ways: WAYS };
const cfgs: Record<string, Record<string, unknown>> = {
  maml: { ...base, innerLr: 0.5, metaLr: 0.01, innerSteps: 1 },
  fomaml: { ...base, innerLr: 0.5, metaLr: 0.01 },
  anil: { ...base, innerLr: 0.5, metaLr: 0.01 },
  metasgd: { ...base, innerLr: 0.5, metaLr: 0.01 },
  imaml: { ...base, innerLr: 0.3, metaLr: 0.01, innerSteps: 5, lambda: 1, cgSteps: 3 },
  reptile: { ...base, innerOptimizer: 'sgd', innerLr: 0.3, metaLr: 0.3, innerSteps: 5, reptileUseQuery: true },
};

function evalAcc(l: OptimLearner, seed: number, n: number): number {
  const rng = new Rng(seed);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    const e = episode(rng, 2, 5);
    const c = l.adapt(e.support, WAYS);
    const p = c.predict(e.query.x);
    const pred = tf.tidy(() => tf.argMax(p, -1)).dataSync();
    acc += pred.reduce((s, v, j) => s + (v === e.query.y[j] ? 1 : 0), 0) / pred.length / n;
    p.dispose();
    c.dispose();
    disposeEp(e);
  }
  return acc;
}

describe.each(OPTIM_ALGORITHMS)('%s learner', (id) => {
  it('meta-trains (accuracy after adaptation improves), keeps tensor count flat, exports verified ONNX, round-trips checkpoints', async () => {
    const f = getLearner(id);
    expect(f.family).toBe('optim');
    const l = f.create(cfgs[id], { inputShape: [DIM], seed: 3 }) as OptimLearner;
    const rng = new Rng(99);
    const acc0 = evalAcc(l, 7, 20);
    let counts: number[] = [];
    for (let s = 0; s < 40; s++) {
      const batch = [episode(rng, 2, 5), episode(rng, 2, 5)];
      const r = l.metaTrainStep(batch);
      expect(Number.isFinite(r.loss)).toBe(true);
      batch.forEach(disposeEp);
      counts.push(tf.memory().numTensors);
    }
    counts = counts.slice(2);
    expect(Math.max(...counts)).toBe(Math.min(...counts));
    const acc1 = evalAcc(l, 7, 20);
    console.log(`${id}: query accuracy after adaptation ${acc0.toFixed(3)} -> ${acc1.toFixed(3)} (40 meta-steps)`);
    expect(acc1).toBeGreaterThan(acc0);

    // ONNX of the adapted fast weights, checked in onnxruntime against tfjs
    const e = episode(new Rng(5), 2, 5);
    const c = l.adapt(e.support, WAYS);
    const want = c.predict(e.query.x);
    const { maxAbsDiff } = await verifyOnnx(c.toOnnx(), e.query.x, want);
    expect(maxAbsDiff).toBeLessThan(1e-4);

    // checkpoint round trip: same predictions after load into a fresh learner
    const st = JSON.parse(JSON.stringify(l.state()));
    const l2 = f.create(cfgs[id], { inputShape: [DIM], seed: 123 }) as OptimLearner;
    l2.load(st);
    const c2 = l2.adapt(e.support, WAYS);
    const got = c2.predict(e.query.x);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(got, want)))).dataSync()[0]).toBeLessThan(1e-6);
    // and the next training step is identical (optimiser state restored)
    const b1 = [episode(new Rng(8), 2, 5)];
    const b2 = [episode(new Rng(8), 2, 5)];
    expect(l2.metaTrainStep(b2).loss).toBeCloseTo(l.metaTrainStep(b1).loss, 6);
    [...b1, ...b2, e].forEach(disposeEp);
    [want, got].forEach((t) => t.dispose());
    [c, c2].forEach((x) => x.dispose());
    l.dispose();
    l2.dispose();
  });
});

describe('config and errors', () => {
  it('same seed gives the same training losses', () => {
    const run = () => {
      const l = getLearner('maml').create(cfgs.maml, { inputShape: [DIM], seed: 11 });
      const rng = new Rng(1);
      const out: number[] = [];
      for (let i = 0; i < 3; i++) {
        const b = [episode(rng, 1, 3)];
        out.push(l.metaTrainStep(b).loss);
        b.forEach(disposeEp);
      }
      l.dispose();
      return out;
    };
    expect(run()).toEqual(run());
  });

  it('rejects unknown fields, wrong types and mismatched ways with clear messages', () => {
    expect(() => getLearner('maml').create({ innerLR: 0.1 }, { inputShape: [DIM], seed: 1 })).toThrow(/unknown field 'innerLR'/);
    expect(() => getLearner('imaml').create({ cgSteps: 'five' }, { inputShape: [DIM], seed: 1 })).toThrow(/cgSteps/);
    expect(() => getLearner('maml').create({ innerOptimizer: 'rmsprop', backbone: { type: 'mlp' } }, { inputShape: [DIM], seed: 1 })).toThrow(/unknown inner optimiser 'rmsprop'/);
    const l = getLearner('anil').create({ ...base }, { inputShape: [DIM], seed: 1 });
    const e = episode(new Rng(1), 1, 1);
    expect(() => l.adapt(e.support, 5)).toThrow(/ways/);
    disposeEp(e);
    l.dispose();
  });
});

describe('zeroHead', () => {
  it.each(['fomaml', 'imaml', 'reptile'] as const)('%s: the head starts at zero and stays there, the body still trains', (id) => {
    const l = getLearner(id).create({ ...cfgs[id], zeroHead: true }, { inputShape: [DIM], seed: 3 }) as OptimLearner;
    const headNorm = () => Math.max(...l.headKeys.map((k) => tf.tidy(() => tf.max(tf.abs(l.meta[k]!)).dataSync()[0]!)));
    expect(l.headKeys.length).toBeGreaterThan(0);
    expect(headNorm()).toBe(0);
    const body = l.model.paramNames().find((k) => !k.startsWith('head.'))!;
    const before = l.meta[body]!.dataSync().slice();
    const rng = new Rng(8);
    for (let s = 0; s < 3; s++) {
      const batch = [episode(rng, 2, 5), episode(rng, 2, 5)];
      l.metaTrainStep(batch);
      batch.forEach(disposeEp);
    }
    expect(headNorm()).toBe(0);
    const after = l.meta[body]!.dataSync();
    expect(Math.max(...after.map((v, i) => Math.abs(v - before[i]!)))).toBeGreaterThan(0);
    l.dispose();
  });
});

describe('iMAML test-time adaptation', () => {
  it('uses the training λ by default, evalLambda when given, and plain SGD for evalLambda 0', () => {
    const cfg = { ...cfgs.imaml!, lambda: 2 };
    const e = episode(new Rng(5), 2, 5);
    const y = tf.tensor1d(e.support.y, 'int32');
    const adapted = (extra: Record<string, unknown>) => {
      const l = getLearner('imaml').create({ ...cfg, ...extra }, { inputShape: [DIM], seed: 3 }) as OptimLearner;
      const got = l.adaptParams(e.support);
      const ref = (lambda: number) => {
        const spec = l.spec(l.config.evalInnerSteps ?? l.config.innerSteps);
        if (lambda > 0) spec.proximal = { lambda, anchor: l.meta };
        return innerLoop(spec, l.meta, e.support.x, y, false);
      };
      return { l, got, ref };
    };
    const maxDiff = (a: Params, b: Params) => Math.max(...Object.keys(a).map((k) => tf.tidy(() => tf.max(tf.abs(tf.sub(a[k]!, b[k]!))).dataSync()[0]!)));
    for (const [extra, lambda] of [[{}, 2], [{ evalLambda: 0.5 }, 0.5], [{ evalLambda: 0 }, 0]] as const) {
      const { l, got, ref } = adapted(extra);
      const want = ref(lambda);
      expect(maxDiff(got, want)).toBeLessThan(1e-6);
      if (lambda !== 0) {
        const plain = ref(0);
        expect(maxDiff(got, plain)).toBeGreaterThan(1e-4); // the proximal term does change the adapted weights
        disposeParams(plain);
      }
      disposeParams(got, want);
      l.dispose();
    }
    y.dispose();
    disposeEp(e);
  });
});

describe('Conv-4 backbone (tiny)', () => {
  it('second-order MAML step, adaptation and ONNX export with batch-statistics batch-norm', async () => {
    const l = getLearner('maml').create({ backbone: { type: 'conv4', filters: 4 }, ways: 2, innerLr: 0.4 }, { inputShape: [16, 16, 1], seed: 2 }) as OptimLearner;
    const rng = new Rng(4);
    const img = (n: number) => tf.tensor4d(Float32Array.from({ length: n * 256 }, () => rng.uniform()), [n, 16, 16, 1]);
    const ep: Episode = { ways: 2, shots: 1, support: { x: img(2), y: Int32Array.from([0, 1]) }, query: { x: img(4), y: Int32Array.from([0, 0, 1, 1]) } };
    const r1 = l.metaTrainStep([ep]);
    const before = tf.memory().numTensors; // after the first step, which creates Adam's moments
    const r2 = l.metaTrainStep([ep]);
    expect(tf.memory().numTensors).toBe(before);
    expect(r2.loss).toBeLessThan(r1.loss);
    expect(r1.metrics?.gradNorm).toBeGreaterThan(0);
    const c = l.adapt(ep.support, 2);
    const want = c.predict(ep.query.x);
    const { maxAbsDiff } = await verifyOnnx(c.toOnnx(), ep.query.x, want);
    expect(maxAbsDiff).toBeLessThan(1e-4);
    want.dispose();
    c.dispose();
    disposeEp(ep);
    l.dispose();
  });
});
