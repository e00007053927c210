/**
 * Santoro et al. 2016 protocol: Omniglot (20x20, 1200/423 split, rotations as classes, random
 * translations), 5 classes x 10 instances per episode as one shuffled sequence, labels one step late.
 * Accuracy at the 1st/2nd/3rd/5th/10th instance of each class on test-split episodes.
 *   LEARNER=mann|lstm-meta TRAIN_MINUTES=35 npx vitest run -c scripts/vitest.repro.config.ts scripts/santoro.repro.ts
 * Env: BATCH (episodes per update, 16), LR (Adam, 1e-3), EVAL_EPISODES (200), RUN (output folder
 * under repro/, default santoro-<learner>), CONFIG (JSON merged into the learner config, e.g.
 * '{"writeVector":"key"}'), WORKERS (worker threads sharing each update's episodes, default 1).
 */
import { it } from 'vitest';
import { Rng, WorkerPool, evaluateByInstance, getLearner, taskParallelStep, type MetaLearner, type SequenceEvaluator } from '@metalearn/core';
import { EpisodeSampler } from '@metalearn/data';
import '@metalearn/memory'; // registers mann and lstm-meta
import type { SequenceLearner } from '@metalearn/memory';
import { augmented, envJson, haveOmniglot, minutes, omniglot, RunLog, setup } from './common.js';

const learnerId = process.env['LEARNER'] ?? 'mann';

it.skipIf(!haveOmniglot())(`Santoro protocol: ${learnerId} (skips without ../shared/data/omniglot)`, async () => {
  await setup();
  const ds = await omniglot(20);
  const spec = { ways: 5, shots: 10, queries: 0 };
  const train = new EpisodeSampler(ds, 'train', spec, 'santoro-train');
  const test = new EpisodeSampler(ds, 'test', spec, 'santoro-test');
  const batch = Number(process.env['BATCH'] ?? 16);
  const cfg = { lr: Number(process.env['LR'] ?? 1e-3), ...envJson('CONFIG') };
  const ctx = { inputShape: [...ds.featureShape], seed: 1 };
  const learner = getLearner(learnerId).create(cfg, ctx) as unknown as SequenceLearner<never>;
  const workers = Number(process.env['WORKERS'] ?? 1);
  const pool = workers > 1 ? await WorkerPool.create({ size: workers, modules: ['@metalearn/memory'], learner: { id: learnerId, config: cfg, ctx } }) : null;
  const log = new RunLog(process.env['RUN'] ?? `santoro-${learnerId}`);
  const budget = minutes('TRAIN_MINUTES', 35) * 60_000;
  const aug = new Rng('santoro-aug');
  const t0 = Date.now();
  let it = 0;
  let win = { n: 0, loss: 0, a1: 0, a2: 0, a10: 0 };
  while (Date.now() - t0 < budget) {
    const eps = Array.from({ length: batch }, (_, b) => augmented(train, it * batch + b, 2, aug));
    const r = pool ? taskParallelStep(learner, eps, pool) : learner.metaTrainStep(eps);
    for (const e of eps) e.dispose?.();
    it++;
    win.n++;
    win.loss += r.loss;
    win.a1 += r.metrics?.['acc_inst1'] ?? NaN;
    win.a2 += r.metrics?.['acc_inst2'] ?? NaN;
    win.a10 += r.metrics?.['acc_inst10'] ?? NaN;
    if (it % 10 === 0) {
      log.log({ iteration: it, episodes: it * batch, seconds: Math.round((Date.now() - t0) / 1000), loss: win.loss / win.n, acc_inst1: win.a1 / win.n, acc_inst2: win.a2 / win.n, acc_inst10: win.a10 / win.n });
      win = { n: 0, loss: 0, a1: 0, a2: 0, a10: 0 };
    }
  }
  const trainSeconds = (Date.now() - t0) / 1000;
  await pool?.close();
  // evaluation: test-split episodes, no augmentation
  const nEval = Number(process.env['EVAL_EPISODES'] ?? 200);
  // instances 1..10 of test-split episodes; sequence orders from 'santoro-eval-order' (as in the recorded runs)
  const acc = evaluateByInstance(learner as unknown as MetaLearner & SequenceEvaluator, (i) => test.episode(i), nEval, 10, 'santoro', undefined, 'santoro-eval-order');
  log.summary({ learner: learnerId, config: learner.config, batch, workers, iterations: it, episodes: it * batch, trainSeconds, evalEpisodes: nEval, accuracyByInstance: acc });
  learner.dispose();
});
