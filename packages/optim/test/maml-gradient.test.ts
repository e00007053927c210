import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@metalearn/core';
import { adam, fomamlTaskGrad, mamlObjective, mamlTaskGrad, mse, type InnerLoopSpec, type Params } from '../src/index.js';
import { fdGrad, flat, relErr, sineTask, tinyMlp, useCpu } from './helpers.js';

beforeAll(useCpu);

const net = tinyMlp([1, 6, 6, 1], 'tanh');

function check(spec: InnerLoopSpec, meta: Params, seed: number, label: string) {
  const task = sineTask(new Rng(seed), 5, 10);
  const before = tf.memory().numTensors;
  const r = mamlTaskGrad(spec, meta, task);
  r.queryOut.dispose();
  const fd = fdGrad((p) => mamlObjective(spec, p, task), meta, 1e-2);
  const keys = Object.keys(meta).sort();
  const err = relErr(flat(r.grads, keys), flat(fd, keys));
  const fo = spec.adaptKeys || keys.some((k) => k.startsWith('lr:')) ? null : fomamlTaskGrad(spec, meta, task);
  const foErr = fo ? relErr(flat(fo.grads, keys), flat(fd, keys)) : NaN;
  console.log(`${label}: relative error of meta-gradient vs finite differences = ${err.toExponential(2)}` + (fo ? `; FOMAML vs FD = ${foErr.toExponential(2)}` : ''));
  expect(err).toBeLessThan(5e-3);
  if (fo) {
    // the second-order terms matter here, so a first-order gradient cannot pass the bound above
    expect(foErr).toBeGreaterThan(10 * err);
    fo.queryOut.dispose();
    Object.values(fo.grads).forEach((t) => t.dispose());
  }
  Object.values(r.grads).forEach((t) => t.dispose());
  Object.values(fd).forEach((t) => t.dispose());
  expect(tf.memory().numTensors).toBe(before);
  Object.values(task).forEach((t) => t.dispose());
}

describe('MAML meta-gradient equals finite differences', () => {
  it('second-order MAML, 2 inner SGD steps', () => {
    const meta = net.init(new Rng(1));
    check({ net, loss: mse, steps: 2, lr: 0.05 }, meta, 11, 'MAML k=2');
  });

  it('second-order MAML, 1 step, ANIL (head only)', () => {
    const meta = net.init(new Rng(2));
    check({ net, loss: mse, steps: 1, lr: 0.05, adaptKeys: ['l2.weight', 'l2.bias'] }, meta, 12, 'ANIL k=1');
  });

  it('Meta-SGD: gradient w.r.t. learned per-parameter learning rates', () => {
    const meta = net.init(new Rng(3));
    for (const k of Object.keys(meta)) meta[`lr:${k}`] = tf.fill(meta[k]!.shape, 0.03);
    check({ net, loss: mse, steps: 1, lr: 0.05 }, meta, 13, 'Meta-SGD k=1');
  });

  it('MAML with per-step learned rates and a differentiable Adam inner optimiser', () => {
    const meta = net.init(new Rng(4)); // Adam's eps smooths g/√(g²+ε²) so central differences are accurate
    for (const k of Object.keys(meta).filter((k) => !k.startsWith('lr:'))) {
      meta[`lr:0:${k}`] = tf.scalar(0.01);
      meta[`lr:1:${k}`] = tf.scalar(0.02);
    }
    check({ net, loss: mse, steps: 2, lr: 0.05, optimizer: adam({ eps: 0.5 }) }, meta, 14, 'MAML+Adam inner k=2');
  });
});

describe('MAML on classification with core layers (Sequential mlp, ReLU, cross-entropy)', () => {
  it('second-order meta-gradient equals finite differences', async () => {
    const { mlp, Dense, initEngine } = await import('@metalearn/core');
    await initEngine({ backend: 'cpu', quiet: true });
    const { crossEntropy } = await import('../src/index.js');
    const model = mlp({ inputShape: [3], hidden: [5] }).extend(new Dense({ name: 'head', units: 3 }));
    const meta = model.init(new Rng(8));
    const rng = new Rng(9);
    const x = (n: number) => tf.tensor2d(Float32Array.from({ length: 3 * n }, () => rng.normal()), [n, 3]);
    const task = { xs: x(6), ys: tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), xq: x(6), yq: tf.tensor1d([0, 1, 2, 2, 1, 0], 'int32') };
    const spec: InnerLoopSpec = { net: model, loss: crossEntropy, steps: 2, lr: 0.5 };
    const r = mamlTaskGrad(spec, meta, task);
    r.queryOut.dispose();
    const fd = fdGrad((p) => mamlObjective(spec, p, task), meta, 1e-3);
    const fo = fomamlTaskGrad(spec, meta, task);
    fo.queryOut.dispose();
    const keys = Object.keys(meta).sort();
    const err = relErr(flat(r.grads, keys), flat(fd, keys));
    const foErr = relErr(flat(fo.grads, keys), flat(fd, keys));
    console.log(`MAML classification k=2: relative error vs finite differences = ${err.toExponential(2)}; FOMAML vs FD = ${foErr.toExponential(2)}`);
    expect(err).toBeLessThan(1e-2);
    expect(foErr).toBeGreaterThan(5 * err);
  });
});
