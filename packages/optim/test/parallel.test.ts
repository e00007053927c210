/**
 * Task-parallel meta-batches: the same learner trained in this thread and with its tasks in worker
 * threads must reach the same parameters (tasks are summed in task order, so only the thread that
 * ran a task differs). Under vitest the workers run the same TypeScript sources (core's
 * parallel/source-worker.mjs installs module hooks that transpile them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, WorkerPool, maxRelParamDiff, getLearner, isTaskParallel, taskParallelStep, type Episode, type StepResult, type TaskParallelLearner } from '@metalearn/core';
import '../src/index.js';
import { useCpu } from './helpers.js';

beforeAll(useCpu);

const WAYS = 3;
const DIM = 6;
const SEED = 11;

function episode(rng: Rng, shots: number, queries: number, dim = DIM): Episode {
  const draw = (per: number) => {
    const x: number[] = [];
    const y: number[] = [];
    for (let c = 0; c < WAYS; c++)
      for (let i = 0; i < per; i++) {
        for (let d = 0; d < dim; d++) x.push(rng.normal(d === c ? 1.5 : 0, 1));
        y.push(c);
      }
    return { x: tf.tensor2d(x, [WAYS * per, dim]), y: Int32Array.from(y) };
  };
  return { ways: WAYS, shots, support: draw(shots), query: draw(queries) };
}

const dispose = (b: Episode[]) => b.forEach((e) => (e.support.x.dispose(), e.query.x.dispose()));
const base = { backbone: { type: 'mlp', hidden: [16] }, ways: WAYS };
const cfgs: Record<string, Record<string, unknown>> = {
  maml: { ...base, innerLr: 0.5, metaLr: 0.01, innerSteps: 2 },
  fomaml: { ...base, innerLr: 0.5, metaLr: 0.01 },
  reptile: { ...base, innerOptimizer: 'sgd', innerLr: 0.3, metaLr: 0.3, innerSteps: 3, reptileUseQuery: true },
  imaml: { ...base, innerLr: 0.3, metaLr: 0.01, innerSteps: 3, lambda: 1, cgSteps: 2 },
  'maml-graph': { ...base, innerLr: 0.5, metaLr: 0.01, innerSteps: 2, engine: 'onnxruntime' },
};
const algo = (id: string) => id.replace(/-graph$/, '');

function make(id: string): TaskParallelLearner {
  const l = getLearner(algo(id)).create(cfgs[id], { inputShape: [DIM], seed: SEED });
  if (!isTaskParallel(l)) throw new Error(`${id} is not task-parallel`);
  return l;
}

/** `steps` meta-batches of 4 tasks (the same episodes for every caller). */
function train(l: TaskParallelLearner, pool: WorkerPool | null, steps: number): StepResult[] {
  const rng = new Rng(5);
  const out: StepResult[] = [];
  for (let s = 0; s < steps; s++) {
    const batch = [0, 1, 2, 3].map(() => episode(rng, 2, 4));
    out.push(pool ? taskParallelStep(l, batch, pool) : l.metaTrainStep(batch));
    dispose(batch);
  }
  return out;
}

const pools: WorkerPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.close();
});

async function pool(id: string, size: number): Promise<WorkerPool> {
  const p = await WorkerPool.create({ size, modules: ['@metalearn/optim'], learner: { id: algo(id), config: cfgs[id], ctx: { inputShape: [DIM], seed: SEED } } });
  pools.push(p);
  return p;
}

describe('task-parallel optim learners', () => {
  it.each([
    ['maml', 2],
    ['reptile', 2],
    ['imaml', 3],
  ] as const)('%s: meta-batch of 4 in-process (workers=1) and on %i workers give the same parameters', async (id, workers) => {
    const a = make(id);
    const b = make(id);
    const p = await pool(id, workers);
    const ra = train(a, null, 3);
    const rb = train(b, p, 3);
    const before = make(id);
    // training moved the parameters, and both runs moved them the same way
    expect(maxRelParamDiff(a.getParams(), before.getParams())).toBeGreaterThan(1e-3);
    expect(maxRelParamDiff(a.getParams(), b.getParams())).toBeLessThan(1e-5);
    ra.forEach((r, i) => {
      expect(rb[i]!.loss).toBeCloseTo(r.loss, 5);
      expect(rb[i]!.accuracy).toBe(r.accuracy);
    });
    for (const l of [a, b, before]) l.dispose();
  });

  it("maml with engine 'onnxruntime': in-process and on 2 workers agree up to float summation order", async () => {
    // the graphs run on all cores in this thread and on one thread per worker, and onnxruntime
    // splits the inner dimension of small matmuls across threads: the same sums in another order
    const id = 'maml-graph';
    const a = make(id);
    const b = make(id);
    const p = await pool(id, 2);
    const ra = train(a, null, 3);
    const rb = train(b, p, 3);
    const before = make(id);
    expect(maxRelParamDiff(a.getParams(), before.getParams())).toBeGreaterThan(1e-3);
    expect(maxRelParamDiff(a.getParams(), b.getParams())).toBeLessThan(1e-4);
    ra.forEach((r, i) => {
      expect(rb[i]!.loss).toBeCloseTo(r.loss, 4);
      expect(rb[i]!.accuracy).toBe(r.accuracy);
    });
    for (const l of [a, b, before]) l.dispose();
  });

  it('an error in a worker surfaces with its message; the pool stays usable, then closes', async () => {
    const id = 'fomaml';
    const l = make(id);
    const p = await pool(id, 2);
    const rng = new Rng(1);
    // tasks 2 and 3 (worker 1) have 4 input features instead of 6
    const bad = [episode(rng, 2, 3), episode(rng, 2, 3), episode(rng, 2, 3, 4), episode(rng, 2, 3, 4)];
    expect(() => taskParallelStep(l, bad, p)).toThrow(/worker 1 \(tasks 2\.\.3\): .*/);
    dispose(bad);
    expect(train(l, p, 1)[0]!.loss).toBeGreaterThan(0);
    await p.close();
    expect(() => train(l, p, 1)).toThrow(/pool is closed/);
    l.dispose();
  });

  it('a learner that cannot be built in the workers fails pool start-up with the worker message', async () => {
    await expect(WorkerPool.create({ size: 1, modules: ['@metalearn/optim'], learner: { id: 'no-such-learner', config: {}, ctx: { inputShape: [DIM], seed: 1 } } })).rejects.toThrow(
      /worker 0 failed to start learner 'no-such-learner': unknown learner 'no-such-learner'/,
    );
  });
});
