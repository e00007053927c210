/**
 * Task-parallel meta-batches for metric learners: in-process and worker-thread training of the same
 * learner reach the same parameters and batch-norm statistics; per-task randomness (Siamese pair
 * sampling and distortions) comes from the step seed and task index, not from the thread. Under vitest
 * the workers run the same TypeScript sources (core's parallel/source-worker.mjs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, WorkerPool, maxRelParamDiff, getLearner, initEngine, isTaskParallel, taskParallelStep, type Episode, type StepResult, type TaskParallelLearner } from '@metalearn/core';
import '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

const WAYS = 3;
const SHAPE = [10, 10, 1];
const SEED = 4;
// epsilon 1e-4: the conv biases before batch norm have a zero true gradient, so their computed
// gradient is float noise (~1e-9) that Adam with ε = 1e-8 would turn into full ±lr steps whose sign
// depends on summation order; a larger ε keeps the comparison about the maths, not the noise
const optimizer = { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-4, weightDecay: 0 };
const backbone = { type: 'conv4', filters: 4, blocks: 2 };
const cfgs: Record<string, Record<string, unknown>> = {
  siamese: { backbone, optimizer, lrSchedule: { every: 0, factor: 0.5 }, mode: 'pairs', pairsPerEpisode: 8, distort: true },
  protonet: { backbone, optimizer, lrSchedule: { every: 0, factor: 0.5 }, distance: 'sqeuclidean', cosineScale: 10 },
};

function episode(rng: Rng): Episode {
  const make = (per: number) => {
    const n = WAYS * per;
    const x = tf.tensor4d(rng.uniformArray(n * 100), [n, ...SHAPE] as [number, number, number, number]);
    return { x, y: Int32Array.from({ length: n }, (_, i) => Math.floor(i / per)) };
  };
  const support = make(2);
  const query = make(2);
  return { ways: WAYS, shots: 2, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

function make(id: string): TaskParallelLearner {
  const l = getLearner(id).create(cfgs[id], { inputShape: SHAPE, seed: SEED });
  if (!isTaskParallel(l)) throw new Error(`${id} is not task-parallel`);
  return l;
}

function train(l: TaskParallelLearner, pool: WorkerPool | null, steps: number): StepResult[] {
  const rng = new Rng(8);
  const out: StepResult[] = [];
  for (let s = 0; s < steps; s++) {
    const batch = [0, 1, 2, 3].map(() => episode(rng));
    out.push(pool ? taskParallelStep(l, batch, pool) : l.metaTrainStep(batch));
    batch.forEach((e) => e.dispose!());
  }
  return out;
}

const pools: WorkerPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.close();
});

describe('task-parallel metric learners', () => {
  it.each(['siamese', 'protonet'])('%s: meta-batch of 4 in-process and on 2 workers give the same parameters and batch-norm statistics', async (id) => {
    const p = await WorkerPool.create({ size: 2, modules: ['@metalearn/metric'], learner: { id, config: cfgs[id], ctx: { inputShape: SHAPE, seed: SEED } } });
    pools.push(p);
    const a = make(id);
    const b = make(id);
    const before = make(id).getParams();
    const ra = train(a, null, 2);
    const rb = train(b, p, 2);
    const pa = a.getParams();
    expect(Object.keys(pa).some((k) => k.startsWith('buffer:'))).toBe(true);
    expect(maxRelParamDiff(pa, before)).toBeGreaterThan(1e-3);
    const pb = b.getParams();
    expect(maxRelParamDiff(pa, pb)).toBeLessThan(1e-5);
    ra.forEach((r, i) => {
      expect(rb[i]!.loss).toBeCloseTo(r.loss, 5);
      expect(rb[i]!.accuracy).toBe(r.accuracy);
    });
    // the checkpointed generator advanced identically (one draw per step, in the main thread)
    expect(a.state().rng).toEqual(b.state().rng);
    a.dispose();
    b.dispose();
  });
});
