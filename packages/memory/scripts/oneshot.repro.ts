/**
 * Omniglot 5-way 1-shot (28x28, Vinyals-style class split with rotations as classes) for the image
 * learners of this package: Meta Networks, or IDeMe-Net with and without its deformation branch.
 *   LEARNER=metanet TRAIN_MINUTES=30 npx vitest run -c scripts/vitest.repro.config.ts scripts/oneshot.repro.ts
 *   LEARNER=ideme   TRAIN_MINUTES=15 ...   (trains deform: true for the budget, then deform: false on the
 *   same training episodes: MATCH=iterations (default) gives the baseline the same number of updates,
 *   MATCH=time the same wall-clock budget; both are evaluated on the same test episodes)
 */
import { it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, getLearner, meanCI, argmaxRows, type MetaLearner } from '@metalearn/core';
import { EpisodeSampler, loadOmniglot } from '@metalearn/data';
import '@metalearn/memory'; // registers the learners
import type { IdemeLearner } from '@metalearn/memory';
import { haveOmniglot, minutes, OMNIGLOT_ROOT, RunLog, setup } from './common.js';

const learnerId = process.env['LEARNER'] ?? 'metanet';

function train(learner: MetaLearner, sampler: EpisodeSampler, budgetMs: number, metaBatch: number, log: RunLog, tag: string, maxIterations = Infinity): { iterations: number; seconds: number } {
  const t0 = Date.now();
  let it = 0;
  let win = { n: 0, loss: 0, acc: 0 };
  while (Date.now() - t0 < budgetMs && it < maxIterations) {
    const eps = Array.from({ length: metaBatch }, (_, b) => sampler.episode(it * metaBatch + b));
    const r = learner.metaTrainStep(eps);
    for (const e of eps) e.dispose?.();
    it++;
    win.n++;
    win.loss += r.loss;
    win.acc += r.accuracy;
    if (it % 20 === 0) {
      log.log({ run: tag, iteration: it, episodes: it * metaBatch, seconds: Math.round((Date.now() - t0) / 1000), loss: win.loss / win.n, accuracy: win.acc / win.n });
      win = { n: 0, loss: 0, acc: 0 };
    }
  }
  return { iterations: it, seconds: (Date.now() - t0) / 1000 };
}

function evaluate(learner: MetaLearner, sampler: EpisodeSampler, n: number, adaptOpts?: { deform: boolean }): number[] {
  const accs: number[] = [];
  for (let i = 0; i < n; i++) {
    const e = sampler.episode(i);
    const clf = adaptOpts ? (learner as unknown as IdemeLearner).adapt(e.support, e.ways, { ...adaptOpts, seed: `eval/${i}` }) : learner.adapt(e.support, e.ways);
    const logits = clf.predict(e.query.x);
    const pred = argmaxRows(logits.dataSync(), logits.shape[0], logits.shape[1]);
    let ok = 0;
    for (let j = 0; j < pred.length; j++) if (pred[j] === e.query.y[j]) ok++;
    accs.push(ok / pred.length);
    tf.dispose(logits);
    clf.dispose();
    e.dispose?.();
  }
  return accs;
}

it.skipIf(!haveOmniglot())(`Omniglot 5-way 1-shot: ${learnerId} (skips without ../shared/data/omniglot)`, async () => {
  await setup();
  const ds = await loadOmniglot({ root: OMNIGLOT_ROOT, size: 28, rotations: true, split: 'vinyals' });
  const trainS = new EpisodeSampler(ds, 'train', { ways: 5, shots: 1, queries: 5 }, `${learnerId}-train`);
  const testS = new EpisodeSampler(ds, 'test', { ways: 5, shots: 1, queries: 15 }, 'oneshot-test');
  const nEval = Number(process.env['EVAL_EPISODES'] ?? 300);
  const budget = minutes('TRAIN_MINUTES', 30) * 60_000;
  const metaBatch = Number(process.env['META_BATCH'] ?? 4);
  const log = new RunLog(process.env['RUN'] ?? `oneshot-${learnerId}`);
  const ctx = { inputShape: [...ds.featureShape], seed: 1 };
  if (learnerId === 'ideme') {
    const results: Record<string, unknown> = {};
    const perEpisode: Record<string, number[]> = {};
    const match = process.env['MATCH'] ?? 'iterations';
    if (match !== 'iterations' && match !== 'time') throw new Error(`MATCH must be 'iterations' or 'time', got '${match}'`);
    let deformIterations = Infinity;
    for (const deform of [true, false]) {
      const l = getLearner('ideme').create({ deform, filters: Number(process.env['FILTERS'] ?? 32) }, ctx);
      const cap = !deform && match === 'iterations' ? deformIterations : Infinity;
      const { iterations, seconds } = train(l, trainS, cap === Infinity ? budget : Infinity, metaBatch, log, deform ? 'deform' : 'baseline', cap);
      if (deform) deformIterations = iterations;
      const a = evaluate(l, testS, nEval, { deform });
      perEpisode[deform ? 'deform' : 'baseline'] = a;
      results[deform ? 'deform' : 'baseline'] = { iterations, trainSeconds: seconds, accuracy: meanCI(a) };
      if (deform) {
        const off = evaluate(l, testS, nEval, { deform: false });
        perEpisode['deformModelWithoutBranch'] = off;
        results['deformModelWithoutBranch'] = meanCI(off);
        results['gainOfBranchSameModel'] = meanCI(a.map((v, i) => v - off[i]!));
      }
      l.dispose();
    }
    results['gainOverBaseline'] = meanCI(perEpisode['deform']!.map((v, i) => v - perEpisode['baseline']![i]!));
    log.summary({ learner: 'ideme', trainMinutes: budget / 60_000, match, metaBatch, evalEpisodes: nEval, ...results });
  } else {
    const l = getLearner(learnerId).create({ filters: Number(process.env['FILTERS'] ?? 64) }, ctx);
    const { iterations: iters, seconds } = train(l, trainS, budget, metaBatch, log, learnerId);
    const a = evaluate(l, testS, nEval);
    log.summary({ learner: learnerId, config: l.config, iterations: iters, episodes: iters * metaBatch, trainMinutes: budget / 60_000, trainSeconds: seconds, evalEpisodes: nEval, accuracy: meanCI(a) });
    l.dispose();
  }
});
