import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { Rng, getLearner, type Episode } from '@metalearn/core';
import { SequenceLearner, mannFactory, lstmMetaFactory, type MannConfig } from '@metalearn/memory';
import { syntheticEpisode, useCpu } from './helpers.js';

beforeAll(useCpu);

const D = 8;
const tinyMann = { classes: 3, controllerSize: 16, memorySlots: 12, memoryWidth: 6, readHeads: 2, lr: 1e-2 };

function batchOf(rng: Rng, n: number): Episode[] {
  return Array.from({ length: n }, () => syntheticEpisode(rng, 3, 3, 1, D));
}

function mean(a: number[]): number {
  return a.reduce((s, v) => s + v, 0) / a.length;
}

describe('sequence meta-learners', () => {
  it('are registered with JSON Schema configs and reject bad configs naming the field', () => {
    expect(getLearner('mann').family).toBe('memory');
    expect(getLearner('lstm-meta').configSchema).toMatchObject({ type: 'object' });
    expect((mannFactory.configSchema as any).properties.memorySlots.default).toBe(128);
    expect(() => mannFactory.create({ memorySlots: 0 }, { inputShape: [D], seed: 1 })).toThrow(/field 'memorySlots' must be >= 1/);
    expect(() => mannFactory.create({ readHeads: 2.5 } as Partial<MannConfig>, { inputShape: [D], seed: 1 })).toThrow(/'readHeads' must be an integer/);
    expect(() => lstmMetaFactory.create({ memorySlots: 3 } as never, { inputShape: [D], seed: 1 })).toThrow(/unknown field 'memorySlots'/);
    expect(() => mannFactory.create({}, { inputShape: [0], seed: 1 })).toThrow(/inputShape/);
    expect(() => mannFactory.create({ writeVector: 'value' } as never, { inputShape: [D], seed: 1 })).toThrow(/field 'writeVector' must be one of add, key/);
    expect(() => mannFactory.create({ keyStrengthInit: 0.5 }, { inputShape: [D], seed: 1 })).toThrow(/keyStrengthInit must be > 1/);
  });

  for (const [id, cfg] of [
    ['mann', tinyMann],
    ['lstm-meta', { classes: 3, controllerSize: 16, lr: 1e-2 }],
  ] as const) {
    it(`${id}: loss decreases on a tiny synthetic sequence task`, () => {
      const learner = getLearner(id).create(cfg, { inputShape: [D], seed: 5 });
      // a task the training loop must be able to fit quickly: classes have fixed prototypes, so
      // the loss can fall by learning x -> y (label binding is what the reproduction runs measure)
      const rng = new Rng(9);
      const protos = Array.from({ length: 3 }, () => rng.normalArray(D));
      const losses: number[] = [];
      for (let i = 0; i < 30; i++) {
        const eps = Array.from({ length: 2 }, () => syntheticEpisode(rng, 3, 2, 1, D, 0.3, protos));
        losses.push(learner.metaTrainStep(eps).loss);
        for (const e of eps) e.dispose?.();
      }
      const first = mean(losses.slice(0, 5));
      const last = mean(losses.slice(-5));
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(last).toBeLessThan(0.6 * first);
      learner.dispose();
    });
  }

  it('state round trip: a loaded learner predicts and trains exactly like the original', () => {
    const a = mannFactory.create(tinyMann, { inputShape: [D], seed: 3 }) as unknown as SequenceLearner<MannConfig>;
    const rng = new Rng(4);
    for (let i = 0; i < 3; i++) a.metaTrainStep(batchOf(rng, 2));
    const ck = JSON.parse(JSON.stringify(a.state()));
    const b = mannFactory.create(tinyMann, { inputShape: [D], seed: 99 }) as unknown as SequenceLearner<MannConfig>;
    b.load(ck);
    const eps = batchOf(rng, 2);
    const ra = a.metaTrainStep(eps);
    const rb = b.metaTrainStep(eps);
    expect(rb.loss).toBe(ra.loss);
    for (const k of Object.keys(a.params)) expect(Array.from(b.params[k]!.dataSync())).toEqual(Array.from(a.params[k]!.dataSync()));
    expect(() => b.load({ ...ck, learner: 'lstm-meta' })).toThrow(/checkpoint is for learner 'lstm-meta'/);
    const bad = JSON.parse(JSON.stringify(ck));
    bad.params['out.weight'].shape = [1, 1];
    expect(() => b.load(bad)).toThrow(/params.out.weight has shape \[1,1\]/);
    a.dispose();
    b.dispose();
  });

  it('same seed -> same results', () => {
    const run = () => {
      const l = mannFactory.create(tinyMann, { inputShape: [D], seed: 8 });
      const rng = new Rng(2);
      const r = [l.metaTrainStep(batchOf(rng, 2)).loss, l.metaTrainStep(batchOf(rng, 2)).loss];
      l.dispose();
      return r;
    };
    expect(run()).toEqual(run());
  });

  it('adapt streams the support set; the adapted classifier exports to ONNX with the state baked in', async () => {
    const l = mannFactory.create(tinyMann, { inputShape: [2, 4], seed: 6 }) as unknown as SequenceLearner<MannConfig>;
    const rng = new Rng(1);
    const ep = syntheticEpisode(rng, 3, 2, 4, D);
    const support = { x: tf.reshape(ep.support.x, [-1, 2, 4]), y: ep.support.y };
    const clf = l.adapt(support, 3);
    const qx = tf.reshape(ep.query.x, [-1, 2, 4]);
    const logits = clf.predict(qx);
    expect(logits.shape).toEqual([12, 3]);
    const onnx = clf.toOnnx();
    const sess = await ort.InferenceSession.create(onnx.bytes);
    expect(onnx.inputs[0]!.shape).toEqual(['batch', 2, 4]);
    const out = await sess.run({ x: new ort.Tensor('float32', ep.query.x.dataSync() as Float32Array, [12, 2, 4]) });
    const a = out.logits!.data as Float32Array;
    const b = logits.dataSync();
    let m = 0;
    for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    expect(out.logits!.dims).toEqual([12, 3]);
    expect(m).toBeLessThanOrEqual(1e-4);
    expect(() => l.adapt(support, 4)).toThrow(/4 ways but config 'classes' is 3/);
    clf.dispose();
    l.dispose();
  });

  it('evaluateSequences reports accuracy by instance number', () => {
    const l = lstmMetaFactory.create({ classes: 3, controllerSize: 8 }, { inputShape: [D], seed: 2 }) as unknown as SequenceLearner<MannConfig>;
    const r = l.evaluateSequences(batchOf(new Rng(3), 2), new Rng(4), 4);
    expect(r.count.slice(1)).toEqual([6, 6, 6, 6]); // 2 episodes x 3 classes, 4 items per class
    for (const a of r.accuracy.slice(1)) expect(a).toBeGreaterThanOrEqual(0);
    l.dispose();
  });
});
