/**
 * Task-parallel meta-batches for the memory family: MetaNet and IDeMe trained in this thread
 * (workers = 1, `metaTrainStep`) and with their tasks on a pool of 2 worker threads reach the same
 * parameters, batch-norm statistics and (IDeMe) gallery; per-task randomness (IDeMe's gallery
 * draws) comes from the step seed and task index, not from the thread. Under vitest the workers run
 * the same TypeScript sources (core's parallel/source-worker.mjs). MANN and the LSTM meta-learner
 * run each worker's share of the meta-batch as one batch of sequences (one result per share).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, WorkerPool, getLearner, isTaskParallel, maxRelParamDiff, taskParallelStep, type Episode, type StepResult, type TaskParallelLearner } from '@metalearn/core';
import { episodesToSequences, type MannConfig, type SequenceLearner } from '@metalearn/memory';
import { variableTaskGrads } from '../src/parallel.js';
import { syntheticEpisode, useCpu } from './helpers.js';

beforeAll(useCpu);

const SEED = 6;
const D = 8;
const IMG = [16, 16, 1];
const MANN = { classes: 3, controllerSize: 16, memorySlots: 12, memoryWidth: 6, readHeads: 2, lr: 1e-2 };

interface Case {
  config: Record<string, unknown>;
  inputShape: number[];
  episode: (rng: Rng) => Episode;
}

function imageEpisode(rng: Rng): Episode {
  const img = (n: number) => tf.tensor4d(rng.uniformArray(n * 256), [n, 16, 16, 1]);
  const support = { x: img(3), y: Int32Array.from([0, 1, 2]) };
  const query = { x: img(6), y: Int32Array.from([0, 1, 2, 0, 1, 2]) };
  return { ways: 3, shots: 1, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

const cases: Record<string, Case> = {
  // conv4 backbones: batch-norm running statistics travel to the workers and back
  metanet: { config: { classes: 3, backbone: 'conv4', filters: 4, embedDim: 6, metaHidden: 4, lr: 5e-3 }, inputShape: IMG, episode: imageEpisode },
  // the gallery (40 images) is empty in step 1 and filled from step 1's batch (36) and step 2's
  ideme: { config: { classes: 3, backbone: 'conv4', filters: 4, patches: 4, augPerExample: 2, gallerySize: 40, deformFilters: 2, lr: 5e-3 }, inputShape: IMG, episode: imageEpisode },
};

function make(id: string): TaskParallelLearner {
  const c = cases[id]!;
  const l = getLearner(id).create(c.config, { inputShape: c.inputShape, seed: SEED });
  if (!isTaskParallel(l)) throw new Error(`${id} is not task-parallel`);
  return l;
}

/** `steps` meta-batches of 4 tasks (the same episodes for every caller); tensor counts after each step. */
function train(id: string, l: TaskParallelLearner, pool: WorkerPool | null, steps: number): { results: StepResult[]; tensors: number[] } {
  const rng = new Rng(5);
  const results: StepResult[] = [];
  const tensors: number[] = [];
  for (let s = 0; s < steps; s++) {
    const batch = [0, 1, 2, 3].map(() => cases[id]!.episode(rng));
    results.push(pool ? taskParallelStep(l, batch, pool) : l.metaTrainStep(batch));
    batch.forEach((e) => e.dispose!());
    tensors.push(tf.memory().numTensors);
  }
  return { results, tensors };
}

const pools: WorkerPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.close();
});

describe('task-parallel memory learners', () => {
  it.each(Object.keys(cases))('%s: meta-batch of 4 in-process (workers=1) and on 2 workers give the same parameters', async (id) => {
    const c = cases[id]!;
    const pool = await WorkerPool.create({ size: 2, modules: ['@metalearn/memory'], learner: { id, config: c.config, ctx: { inputShape: c.inputShape, seed: SEED } } });
    pools.push(pool);
    const a = make(id);
    const b = make(id);
    const before = make(id);
    const ra = train(id, a, null, 3);
    const rb = train(id, b, pool, 3);
    const pa = a.getParams();
    const pb = b.getParams();
    // training moved the parameters, and both runs moved them the same way
    const { gallery: _g, ...moved } = pa; // the untrained learner has no gallery yet
    expect(maxRelParamDiff(moved, before.getParams())).toBeGreaterThan(1e-3);
    expect(maxRelParamDiff(pa, pb)).toBeLessThan(1e-5);
    expect(Object.keys(pa).some((k) => k.startsWith('buffer:'))).toBe(true);
    if (id === 'ideme') expect(pa['gallery']!.shape).toEqual([40, ...IMG]);
    ra.results.forEach((r, i) => {
      const q = rb.results[i]!;
      expect(q.loss).toBeCloseTo(r.loss, 5);
      expect(q.accuracy).toBe(r.accuracy);
      expect(Object.keys(q.metrics ?? {}).sort()).toEqual(Object.keys(r.metrics ?? {}).sort());
      for (const [k, v] of Object.entries(r.metrics ?? {})) expect(q.metrics![k], k).toBeCloseTo(v, 4);
    });
    // the checkpointed generator advanced identically (draws in the main thread only)
    expect(a.state().rng).toEqual(b.state().rng);
    // no tensors leak, in-process or pooled (step 1 creates the Adam moments)
    expect(ra.tensors[2]).toBe(ra.tensors[1]);
    expect(rb.tensors[2]).toBe(rb.tensors[1]);
    for (const l of [a, b, before]) l.dispose();
  });

  it.each([
    ['mann', MANN],
    ['lstm-meta', { classes: 3, controllerSize: 16, lr: 1e-2 }],
  ] as const)('%s: meta-batch of 4 in-process and on 2 workers (2 episodes each, one result per share) give the same parameters', async (id, cfg) => {
    const ctx = { inputShape: [D], seed: SEED };
    const pool = await WorkerPool.create({ size: 2, modules: ['@metalearn/memory'], learner: { id, config: cfg, ctx } });
    pools.push(pool);
    const mk = (): TaskParallelLearner => {
      const l = getLearner(id).create(cfg, ctx);
      if (!isTaskParallel(l)) throw new Error(`${id} is not task-parallel`);
      return l;
    };
    const [a, b, before] = [mk(), mk(), mk()];
    const rng = new Rng(4);
    const ra: StepResult[] = [];
    const rb: StepResult[] = [];
    const tensors: number[] = [];
    for (let s = 0; s < 3; s++) {
      const batch = [0, 1, 2, 3].map(() => syntheticEpisode(rng, 3, 2, 1, D));
      ra.push(a.metaTrainStep(batch));
      rb.push(taskParallelStep(b, batch, pool));
      batch.forEach((e) => e.dispose!());
      tensors.push(tf.memory().numTensors);
    }
    const pa = a.getParams();
    expect(maxRelParamDiff(pa, before.getParams())).toBeGreaterThan(1e-3);
    // the two runs differ only in how the batch-mean sums are grouped (one batch of 4 vs 2 + 2)
    expect(maxRelParamDiff(pa, b.getParams())).toBeLessThan(1e-4);
    ra.forEach((r, i) => {
      const q = rb[i]!;
      expect(q.loss).toBeCloseTo(r.loss, 5);
      expect(q.accuracy).toBe(r.accuracy);
      expect(Object.keys(q.metrics ?? {}).sort()).toEqual(Object.keys(r.metrics ?? {}).sort());
      for (const k of ['acc_inst1', 'acc_inst2', 'acc_inst3']) expect(q.metrics![k], k).toBe(r.metrics![k]);
    });
    expect(Object.keys(ra[0]!.metrics!)).toContain('acc_inst2');
    // the item orders come from the step seed: the checkpointed generator advanced identically
    expect(a.state().rng).toEqual(b.state().rng);
    expect(tensors[2]).toBe(tensors[1]);
    for (const l of [a, b, before]) l.dispose();
  });

  it('MANN: the batched loss and gradient of B sequences are the mean of the per-episode ones (what a share of episodes relies on)', () => {
    // the batched loss over B sequences [B, T, D] is the mean of B independent per-episode terms
    // (the recurrent model treats rows independently, equal lengths): loss and gradient of the batch
    // = mean of the per-episode ones, so shares of any size sum to the whole batch.
    const l = getLearner('mann').create(MANN, { inputShape: [D], seed: SEED }) as unknown as SequenceLearner<MannConfig>;
    const rng = new Rng(3);
    const eps = [0, 1].map(() => syntheticEpisode(rng, 3, 2, 1, D));
    const parts = eps.map((e, i) => episodesToSequences([e], 3, new Rng(`order/${i}`)));
    const tasks = parts.map((p) => variableTaskGrads(l.params, () => l.loss(p)));
    const x = tf.concat(parts.map((p) => p.x), 0) as tf.Tensor3D;
    const yPrev = tf.concat(parts.map((p) => p.yPrev), 0) as tf.Tensor3D;
    const target = Int32Array.from([...parts[0]!.target, ...parts[1]!.target]);
    const batch = { x, yPrev, target, instance: new Int32Array(target.length), B: 2, T: parts[0]!.T, dispose: () => tf.dispose([x, yPrev]) };
    const { value, grads } = tf.variableGrads(() => l.loss(batch), Object.values(l.params));
    expect(value.dataSync()[0]!).toBeCloseTo((tasks[0]!.loss + tasks[1]!.loss) / 2, 5);
    for (const [k, v] of Object.entries(l.params)) {
      const g = grads[v.name]!.dataSync();
      const t0 = tasks[0]!.grads[k]!;
      const t1 = tasks[1]!.grads[k]!;
      for (let j = 0; j < g.length; j++) expect(Math.abs(g[j]! - (t0[j]! + t1[j]!) / 2), `${k}[${j}]`).toBeLessThan(1e-6 + 1e-4 * Math.abs(g[j]!));
    }
    tf.dispose([value, ...Object.values(grads)]);
    batch.dispose();
    parts.forEach((p) => p.dispose());
    eps.forEach((e) => e.dispose!());
    l.dispose();
  });
});
