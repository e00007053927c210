import * as tf from '@tensorflow/tfjs-core';
import { OnnxRunner, argmaxRows, meanCI, type Episode, type EvalResult, type MetaLearner } from '@metalearn/core';
import { materialize, type ClassDataset } from '@metalearn/data';

/**
 * The standard train/test classification protocol (as UEA/UCR papers report it, e.g. TapNet):
 * the learner adapts on EVERY example of `trainSplit` of `train` (all its classes, all their items),
 * and every example of `testSplit` of `test` is classified. The two splits must list the same
 * classes in the same order (matched by class name). Returns the episode (support = the whole
 * training split, query = the whole test split; dispose it) so the caller can export the adapted model.
 */
export function fullSplitEpisode(train: ClassDataset, trainSplit: string, test: ClassDataset, testSplit: string): Episode {
  const tc = train.splits[trainSplit];
  const qc = test.splits[testSplit];
  if (!tc) throw new Error(`evaluate.mode full: dataset '${train.name}' has no split '${trainSplit}'`);
  if (!qc) throw new Error(`evaluate.mode full: dataset '${test.name}' has no split '${testSplit}'`);
  const tn = tc.map((c) => train.classInfo(c).name);
  const qn = qc.map((c) => test.classInfo(c).name);
  if (tn.join('\u0000') !== qn.join('\u0000')) {
    throw new Error(`evaluate.mode full: the training split '${trainSplit}' has classes [${tn.join(', ')}], the test split '${testSplit}' has [${qn.join(', ')}]; full-split evaluation needs the same classes in the same order`);
  }
  if (train.featureShape.join('x') !== test.featureShape.join('x')) {
    throw new Error(`evaluate.mode full: training examples have shape [${train.featureShape}], test examples [${test.featureShape}]`);
  }
  const all = (ds: ClassDataset, c: number): number[] => Array.from({ length: ds.itemCount(c) }, (_, i) => i);
  for (const c of tc) if (train.itemCount(c) < 1) throw new Error(`evaluate.mode full: class '${train.classInfo(c).name}' has no training example`);
  const s = materialize(train, { classes: [...tc], support: tc.map((c) => all(train, c)), query: tc.map(() => []) });
  const q = materialize(test, { classes: [...qc], support: qc.map(() => []), query: qc.map((c) => all(test, c)) });
  return {
    ways: tc.length,
    shots: s.shots,
    support: s.support,
    query: q.query,
    description: { classes: [...tc], support: s.description!.support, query: q.description!.query },
    dispose() {
      s.dispose?.();
      q.dispose?.();
    },
  };
}

export interface FullEvalOptions {
  engine: 'onnxruntime' | 'tfjs';
  /** test examples per forward pass (tfjs) */
  batch?: number;
}

/**
 * Classify the query set of a full-split episode with the classifier adapted on its support set.
 * The result's `accuracies` are per test example (0 or 1): `mean` is the test-set accuracy and
 * `ci95` its normal-approximation 95 % interval over test examples; `n` is the number of test examples.
 */
export async function fullSplitEvaluate(learner: MetaLearner, ep: Episode, opts: FullEvalOptions): Promise<EvalResult> {
  const n = ep.query.y.length;
  if (n === 0) throw new Error('evaluate.mode full: the test split has no examples');
  const clf = learner.adapt(ep.support, ep.ways);
  let pred: Int32Array;
  try {
    if (opts.engine === 'onnxruntime') {
      const runner = await OnnxRunner.create(clf.toOnnx());
      try {
        const r = await runner.run(ep.query.x.dataSync() as Float32Array, [...ep.query.x.shape]);
        pred = argmaxRows(r.data, r.shape[0]!, r.shape[1]!);
      } finally {
        await runner.release();
      }
    } else {
      const b = opts.batch ?? 256;
      pred = new Int32Array(n);
      for (let i = 0; i < n; i += b) {
        const m = Math.min(b, n - i);
        const p = tf.tidy(() => tf.argMax(clf.predict(tf.slice(ep.query.x, i, m)), 1).dataSync());
        pred.set(p, i);
      }
    }
  } finally {
    clf.dispose();
  }
  const accuracies = Array.from(pred, (p, i) => (p === ep.query.y[i] ? 1 : 0));
  return { ...meanCI(accuracies), accuracies };
}
