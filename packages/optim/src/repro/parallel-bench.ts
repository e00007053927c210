/**
 * Task-parallel meta-batches: median ms per meta-training step of a meta-batch of 4 tasks in this
 * thread (workers=1) vs on N worker threads (default 2), for Conv-4/64 second-order MAML and FOMAML,
 * 1 inner step, Omniglot-shaped 28×28×1 5-way 1-shot 15 queries (random data), wasm backend. Also
 * checks that both ways give the same parameters (max relative difference).
 *
 *   nice -n 5 node packages/optim/dist/repro/parallel-bench.js [--workers 2] [--reps 5] [--filters 64] [--out FILE.json]
 *
 * On a shared machine the absolute figures move with the load; the ratio of one run is the figure.
 */
import * as fs from 'node:fs';
import { Rng, WorkerPool, maxRelParamDiff, median, getLearner, initEngine, isTaskParallel, randomEpisode, taskParallelStep, type TaskParallelLearner } from '@metalearn/core';
import '../index.js';
import { parseArgs } from './common.js';

const SHAPE = [28, 28, 1];

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2), { workers: 2, reps: 5, filters: 64, out: '' });
  const info = await initEngine({ backend: 'wasm', quiet: true });
  const rows: Record<string, unknown>[] = [];
  for (const [name, id, extra] of [
    ['maml2 (second order)', 'maml', { firstOrder: false }],
    ['fomaml', 'fomaml', {}],
  ] as const) {
    const config = { backbone: { type: 'conv4', filters: a.filters as number }, ways: 5, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, ...extra };
    const ctx = { inputShape: SHAPE, seed: 1 };
    const make = (): TaskParallelLearner => {
      const l = getLearner(id).create(config, ctx);
      if (!isTaskParallel(l)) throw new Error(`${id} is not task-parallel`);
      return l;
    };
    const t0 = performance.now();
    const pool = await WorkerPool.create({ size: a.workers as number, modules: [import.meta.resolve('../index.js')], learner: { id, config, ctx } });
    const startMs = performance.now() - t0;
    try {
      const times: Record<'1' | 'N', number[]> = { '1': [], N: [] };
      const learners = { '1': make(), N: make() };
      const rng = new Rng(3);
      // one warm-up step each, then `reps` timed steps, alternating so both see the same load
      for (let r = 0; r <= (a.reps as number); r++) {
        const batch = [0, 1, 2, 3].map(() => randomEpisode(rng, { ways: 5, shots: 1, queries: 15, shape: SHAPE }));
        for (const mode of ['1', 'N'] as const) {
          const s = performance.now();
          taskParallelStep(learners[mode], batch, mode === '1' ? null : pool);
          if (r > 0) times[mode].push(performance.now() - s);
        }
        batch.forEach((e) => e.dispose!());
      }
      const m1 = median(times['1']);
      const mN = median(times.N);
      const row = { workload: name, workers: a.workers, reps: a.reps, ms1: Math.round(m1), msN: Math.round(mN), speedup: Number((m1 / mN).toFixed(2)), poolStartMs: Math.round(startMs), maxRelParamDiff: maxRelParamDiff(learners['1'].getParams(), learners.N.getParams()) };
      rows.push(row);
      console.log(JSON.stringify(row));
      learners['1'].dispose();
      learners.N.dispose();
    } finally {
      await pool.close();
    }
  }
  const result = { backend: info.backend, threads: info.threads, shape: SHAPE, filters: a.filters, rows };
  if (a.out) fs.writeFileSync(String(a.out), JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
