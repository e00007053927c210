/**
 * Task-parallel meta-batches of the memory family, median ms per meta-training step (random
 * Omniglot-shaped data: 20×20 for the sequence learners, 28×28×1 for MetaNet / IDeMe; wasm backend;
 * the example pipelines' learner sizes unless CONFIG overrides them),
 * in this thread (workers=1) vs on WORKERS worker threads, and the max relative parameter difference
 * of the two. MANN and lstm-meta run a worker's share of the meta-batch as one batch of sequences.
 *
 *   LEARNER=metanet BATCH=4 REPS=3 npx vitest run -c scripts/vitest.repro.config.ts scripts/parallel.repro.ts
 *
 * Env: LEARNER (mann | lstm-meta | metanet | ideme), BATCH (meta-batch), REPS (timed steps per mode,
 * after one warm-up), WORKERS (pool size, default 2), CONFIG (JSON merged into the learner config).
 * On a shared machine the absolute figures move with the load.
 */
import { it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@metalearn/memory'; // registers the learners
import { envJson } from './common.js';
import { Rng, WorkerPool, getLearner, initEngine, isTaskParallel, maxRelParamDiff, taskParallelStep, type Episode, type MetaLearner, type TaskParallelLearner } from '@metalearn/core';

const id = process.env['LEARNER'] ?? 'mann';
const B = Number(process.env['BATCH'] ?? (id === 'mann' || id === 'lstm-meta' ? 16 : 4));
const REPS = Number(process.env['REPS'] ?? 3);
const WORKERS = Number(process.env['WORKERS'] ?? 2);

const sizes: Record<string, { config: Record<string, unknown>; shape: number[]; queries: number }> = {
  mann: { config: { classes: 5, controllerSize: 200, memorySlots: 128, memoryWidth: 40, readHeads: 4 }, shape: [400], queries: 9 },
  'lstm-meta': { config: { classes: 5, controllerSize: 200 }, shape: [400], queries: 9 },
  metanet: { config: { classes: 5, backbone: 'conv4', filters: 64, embedDim: 64 }, shape: [28, 28, 1], queries: 5 },
  ideme: { config: { classes: 5, backbone: 'conv4', filters: 64 }, shape: [28, 28, 1], queries: 5 },
};

function episode(rng: Rng, shape: number[], queries: number): Episode {
  const d = shape.reduce((a, b) => a * b, 1);
  const mk = (n: number) => tf.tensor(rng.uniformArray(n * d), [n, ...shape]);
  const labels = (per: number) => Int32Array.from({ length: 5 * per }, (_, i) => Math.floor(i / per));
  const support = { x: mk(5), y: labels(1) };
  const query = { x: mk(5 * queries), y: labels(queries) };
  return { ways: 5, shots: 1, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

it(`${id}: ms per meta-step`, async () => {
  const size = sizes[id];
  if (!size) throw new Error(`LEARNER must be one of ${Object.keys(sizes).join(', ')}`);
  await initEngine({ backend: 'wasm', quiet: true });
  const config = { ...size.config, ...envJson('CONFIG') };
  const ctx = { inputShape: size.shape, seed: 1 };
  const make = (): MetaLearner => getLearner(id).create(config, ctx);
  const modes = ['workers1', `workers${WORKERS}`];
  const pool = await WorkerPool.create({ size: WORKERS, modules: ['@metalearn/memory'], learner: { id, config, ctx } });
  const learners: Record<string, MetaLearner> = Object.fromEntries(modes.map((m) => [m, make()]));
  const times: Record<string, number[]> = Object.fromEntries(modes.map((m) => [m, []]));
  const rng = new Rng(3);
  try {
    // one warm-up step each, then REPS timed steps, the modes interleaved so they see the same load
    for (let r = 0; r <= REPS; r++) {
      const batch = Array.from({ length: B }, () => episode(rng, size.shape, size.queries));
      for (const mode of modes) {
        const l = learners[mode]!;
        const t0 = performance.now();
        if (mode === 'workers1') l.metaTrainStep(batch);
        else taskParallelStep(l as TaskParallelLearner, batch, pool);
        if (r > 0) times[mode]!.push(performance.now() - t0);
      }
      batch.forEach((e) => e.dispose!());
    }
    const medianMs = Object.fromEntries(modes.map((m) => [m, Math.round(median(times[m]!))]));
    const [a, b] = modes.map((m) => learners[m]!);
    const extra = { taskParallel: isTaskParallel(a!), speedup: +(medianMs[modes[0]!]! / medianMs[modes[1]!]!).toFixed(2), maxRelParamDiff: maxRelParamDiff((a as TaskParallelLearner).getParams(), (b as TaskParallelLearner).getParams()) };
    console.log(JSON.stringify({ learner: id, metaBatch: B, reps: REPS, medianMs, ...extra, times }));
  } finally {
    await pool.close();
    for (const l of Object.values(learners)) l.dispose();
  }
});
