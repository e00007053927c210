import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { Rng, getLearner, type Episode } from '@metalearn/core';
import { MetaNetLearner, metaNetFactory, preprocessGrad, type MetaNetConfig } from '@metalearn/memory';
import { syntheticEpisode, useCpu } from './helpers.js';

beforeAll(useCpu);

const D = 8;
const tiny: Partial<MetaNetConfig> = { classes: 3, backbone: 'mlp', hidden: [16], embedDim: 12, metaHidden: 8, lr: 5e-3 };
const create = (cfg: Partial<MetaNetConfig>, inputShape: number[], seed: number) => metaNetFactory.create(cfg, { inputShape, seed }) as unknown as MetaNetLearner;

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('Meta Networks', () => {
  it('is registered; bad config names the field', () => {
    expect(getLearner('metanet').family).toBe('memory');
    expect(() => create({ backbone: 'resnet' as never }, [D], 1)).toThrow(/field 'backbone' must be one of conv4, mlp/);
    expect(() => create({ backbone: 'conv4' }, [D], 1)).toThrow(/conv4' needs image inputs/);
  });

  it('gradient preprocessing', () => {
    const v = preprocessGrad(tf.tensor1d([1, -Math.exp(-5), 1e-6])).arraySync() as number[][];
    expect(v[0]![0]).toBeCloseTo(0, 6);
    expect(v[0]![1]).toBe(1);
    expect(v[1]![0]).toBeCloseTo(-0.5, 5);
    expect(v[1]![1]).toBe(-1);
    expect(v[2]![0]).toBe(-1);
    expect(v[2]![1]).toBeCloseTo(1e-6 * Math.exp(10), 5);
  });

  it('query-loss gradient matches finite differences (meta-information gradients held fixed)', () => {
    const l = create(tiny, [D], 4);
    const ep = syntheticEpisode(new Rng(5), 3, 1, 2, D);
    const names = ['m.w2', 'd.w1', 'emb.weight', 'base.weight', 'att.logScale', 'bb.fc1.weight'];
    // the loss gradients fed to m and d are inputs (no gradient flows back through them): the
    // finite differences perturb the weights with that meta-information frozen at its base value
    const info = tf.tidy(() => {
      const i = l.episodeLoss(ep, false).info;
      return { gQ: tf.keep(tf.clone(i.gQ)), gW: tf.keep(tf.clone(i.gW)) };
    });
    const { grads } = tf.variableGrads(() => l.episodeLoss(ep, false).loss, names.map((n) => l.params[n]!));
    const h = 1e-2;
    for (const n of names) {
      const v = l.params[n]!;
      const g = grads[v.name]!.dataSync();
      const base = v.dataSync().slice();
      for (const j of [0, base.length - 1]) {
        const at = (d: number) => {
          const b = base.slice();
          b[j]! += d;
          v.assign(tf.tensor(b, v.shape));
          return l.episodeLoss(ep, false, undefined, info).loss.dataSync()[0]!;
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        v.assign(tf.tensor(base, v.shape));
        expect(Math.abs(fd - g[j]!), `${n}[${j}] fd=${fd} grad=${g[j]}`).toBeLessThan(2e-3 + 0.05 * Math.abs(fd));
      }
    }
    l.dispose();
  });

  it('learns to bind one-shot labels through fast weights (fresh classes every episode)', () => {
    const l = create(tiny, [D], 2);
    const rng = new Rng(3);
    const acc: number[] = [];
    const loss: number[] = [];
    for (let i = 0; i < 120; i++) {
      const eps: Episode[] = [0, 1].map(() => syntheticEpisode(rng, 3, 1, 3, D, 0.8));
      const r = l.metaTrainStep(eps);
      acc.push(r.accuracy);
      loss.push(r.loss);
      for (const e of eps) e.dispose?.();
    }
    const avg = (a: number[]) => a.reduce((x, y) => x + y) / a.length;
    console.log(`metanet synthetic 3-way 1-shot: acc ${avg(acc.slice(0, 20)).toFixed(3)} -> ${avg(acc.slice(-20)).toFixed(3)}, loss ${avg(loss.slice(0, 20)).toFixed(3)} -> ${avg(loss.slice(-20)).toFixed(3)}`);
    expect(avg(loss.slice(-20))).toBeLessThan(0.7 * avg(loss.slice(0, 20)));
    expect(avg(acc.slice(-20))).toBeGreaterThan(avg(acc.slice(0, 20)) + 0.1);
    l.dispose();
  });

  it('adapted classifier (conv4 with batch-norm running stats) matches in onnxruntime', async () => {
    const l = create({ classes: 3, backbone: 'conv4', filters: 4, embedDim: 6, metaHidden: 4 }, [16, 16, 1], 7);
    const rng = new Rng(8);
    const img = (n: number) => tf.tensor4d(rng.uniformArray(n * 256), [n, 16, 16, 1]);
    const ep = (): Episode => ({ ways: 3, shots: 1, support: { x: img(3), y: Int32Array.from([0, 1, 2]) }, query: { x: img(6), y: Int32Array.from([0, 1, 2, 0, 1, 2]) } });
    l.metaTrainStep([ep()]); // moves the running statistics away from their init
    const e = ep();
    const clf = l.adapt(e.support, 3);
    const want = clf.predict(e.query.x);
    const sess = await ort.InferenceSession.create(clf.toOnnx().bytes);
    const out = await sess.run({ x: new ort.Tensor('float32', e.query.x.dataSync() as Float32Array, [6, 16, 16, 1]) });
    expect(out.logits!.dims).toEqual([6, 3]);
    expect(maxAbs(out.logits!.data as Float32Array, want.dataSync())).toBeLessThanOrEqual(1e-4);
    clf.dispose();
    l.dispose();
  });

  it('state round trip', () => {
    const a = create(tiny, [D], 1);
    const rng = new Rng(2);
    a.metaTrainStep([syntheticEpisode(rng, 3, 1, 2, D)]);
    const ck = JSON.parse(JSON.stringify(a.state()));
    const b = create(tiny, [D], 50);
    b.load(ck);
    const e = syntheticEpisode(rng, 3, 1, 2, D);
    expect(b.metaTrainStep([e]).loss).toBe(a.metaTrainStep([e]).loss);
    expect(() => b.load({ ...ck, learner: 'mann' })).toThrow(/checkpoint is for learner 'mann'/);
    a.dispose();
    b.dispose();
  });
});
