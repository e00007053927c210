import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { Rng, getLearner, type Episode } from '@metalearn/core';
import { IdemeLearner, IdemeModel, idemeFactory, type IdemeConfig } from '@metalearn/memory';
import { syntheticEpisode, useCpu } from './helpers.js';

beforeAll(useCpu);

const D = 16;
const tiny: Partial<IdemeConfig> = { classes: 3, backbone: 'mlp', hidden: [12], patches: 2, augPerExample: 2, gallerySize: 8, lr: 5e-3 };
const create = (cfg: Partial<IdemeConfig>, inputShape: number[], seed: number) => idemeFactory.create(cfg, { inputShape, seed }) as unknown as IdemeLearner;

describe('IDeMe-Net', () => {
  it('is registered; config errors name the field', () => {
    expect(getLearner('ideme').family).toBe('memory');
    expect(() => create({ patches: 3 }, [16, 16, 1], 1)).toThrow(/'patches' \(3\) must divide the image size 16x16/);
    expect(() => create({ augPerExample: 0 }, [D], 1)).toThrow(/field 'augPerExample' must be >= 1/);
  });

  it('patch-wise fusion: each p×p weight blends its image block', () => {
    const m = new IdemeModel({ ...(idemeFactory.configSchema as any), classes: 2, backbone: 'mlp', hidden: [4], filters: 4, deform: true, patches: 2, augPerExample: 1, gallerySize: 4, deformFilters: 2, lr: 1, gradClip: 0 }, [4, 4, 1]);
    const probe = tf.ones([1, 4, 4, 1]);
    const gallery = tf.zeros([1, 4, 4, 1]);
    const w = tf.tensor3d([[[1, 0], [0.25, 0.5]]]);
    const out = tf.reshape(m.fuse(w, probe, gallery), [4, 4]).arraySync() as number[][];
    expect(out).toEqual([
      [1, 1, 0, 0],
      [1, 1, 0, 0],
      [0.25, 0.25, 0.5, 0.5],
      [0.25, 0.25, 0.5, 0.5],
    ]);
  });

  it('query-loss gradient (through the deformation branch) matches finite differences', () => {
    const l = create(tiny, [D], 3);
    const ep = syntheticEpisode(new Rng(1), 3, 1, 2, D);
    l.metaTrainStep([syntheticEpisode(new Rng(2), 3, 1, 2, D)]); // fills the gallery
    const names = ['head.weight', 'head.bias', 'emb.fc1.weight'];
    const lossAt = () => l.episodeLoss(ep, true, false, new Rng('fixed')).loss;
    const { grads } = tf.variableGrads(lossAt, names.map((n) => l.params[n]!));
    const h = 1e-3;
    for (const n of names) {
      const v = l.params[n]!;
      const g = grads[v.name]!.dataSync();
      const base = v.dataSync().slice();
      for (const j of [0, Math.floor(base.length / 2)]) {
        const at = (d: number) => {
          const b = base.slice();
          b[j]! += d;
          v.assign(tf.tensor(b, v.shape));
          return lossAt().dataSync()[0]!;
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        v.assign(tf.tensor(base, v.shape));
        expect(Math.abs(fd - g[j]!), `${n}[${j}] fd=${fd} grad=${g[j]}`).toBeLessThan(1e-3 + 0.03 * Math.abs(fd));
      }
    }
    l.dispose();
  });

  it('trains (loss falls) and the adapted classifier runs in onnxruntime (conv4 embedding)', async () => {
    const l = create({ classes: 3, backbone: 'conv4', filters: 4, patches: 4, augPerExample: 2, gallerySize: 6, deformFilters: 2 }, [16, 16, 1], 7);
    const rng = new Rng(8);
    const img = (n: number) => tf.tensor4d(rng.uniformArray(n * 256), [n, 16, 16, 1]);
    const ep = (): Episode => ({ ways: 3, shots: 1, support: { x: img(3), y: Int32Array.from([0, 1, 2]) }, query: { x: img(6), y: Int32Array.from([0, 1, 2, 0, 1, 2]) } });
    l.metaTrainStep([ep()]);
    const e = ep();
    const clf = l.adapt(e.support, 3);
    const want = clf.predict(e.query.x);
    const sess = await ort.InferenceSession.create(clf.toOnnx().bytes);
    const out = await sess.run({ x: new ort.Tensor('float32', e.query.x.dataSync() as Float32Array, [6, 16, 16, 1]) });
    let m = 0;
    const a = out.logits!.data as Float32Array;
    const b = want.dataSync();
    for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
    expect(m).toBeLessThanOrEqual(1e-4);
    // with and without the deformation branch on the same support set
    const plain = l.adapt(e.support, 3, { deform: false });
    expect(plain.predict(e.query.x).shape).toEqual([6, 3]);
    clf.dispose();
    plain.dispose();
    l.dispose();
  });

  it('state round trip (gallery included)', () => {
    const a = create(tiny, [D], 1);
    const rng = new Rng(2);
    a.metaTrainStep([syntheticEpisode(rng, 3, 1, 2, D)]);
    const ck = JSON.parse(JSON.stringify(a.state()));
    expect(ck.params.gallery.shape).toEqual([8, D]);
    const b = create(tiny, [D], 9);
    b.load(ck);
    const e = syntheticEpisode(rng, 3, 1, 2, D);
    expect(b.metaTrainStep([e]).loss).toBe(a.metaTrainStep([e]).loss);
    a.dispose();
    b.dispose();
  });
});
