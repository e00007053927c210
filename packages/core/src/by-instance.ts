import type { Episode, MetaLearner, SequenceEvaluator } from './contracts.js';
import { Rng } from './rng.js';

/** Accuracy at the k-th presentation of a class: key `inst<k>`, binomial 95 % CI over the scored items. */
export type AccuracyByInstance = Record<string, { mean: number; ci95: number; n: number }>;

const r6 = (v: number): number => Number(v.toPrecision(7));

/**
 * Accuracy by instance of a sequence learner over episodes 0..n-1 (each read as one shuffled
 * sequence, labels one step late; support and query items together, no update), in chunks of 20
 * episodes; presentations 1..min(10, shots + queries). The sequence order comes from `(seed,
 * 'test-by-instance')` (or `orderSeed`), so `metalearn run` and `metalearn eval` give the same figures.
 */
export function evaluateByInstance(
  learner: MetaLearner & SequenceEvaluator,
  episode: (i: number) => Episode,
  n: number,
  presentations: number,
  seed: number | string,
  onChunk?: (done: number) => void,
  orderSeed = `${seed}/test-by-instance`,
): AccuracyByInstance {
  const maxInstance = Math.min(10, presentations);
  const correct = new Array<number>(maxInstance + 1).fill(0);
  const count = new Array<number>(maxInstance + 1).fill(0);
  const orderRng = new Rng(orderSeed);
  for (let s = 0; s < n; s += 20) {
    const eps = Array.from({ length: Math.min(20, n - s) }, (_, b) => episode(s + b));
    try {
      const r = learner.evaluateSequences(eps, orderRng, maxInstance);
      for (let k = 1; k <= maxInstance; k++) {
        if (!(r.count[k]! > 0)) continue;
        correct[k]! += r.accuracy[k]! * r.count[k]!;
        count[k]! += r.count[k]!;
      }
    } finally {
      for (const e of eps) e.dispose?.();
    }
    onChunk?.(Math.min(n, s + 20));
  }
  const out: AccuracyByInstance = {};
  for (let k = 1; k <= maxInstance; k++) {
    if (count[k] === 0) continue;
    const p = correct[k]! / count[k]!;
    out[`inst${k}`] = { mean: r6(p), ci95: r6(1.96 * Math.sqrt((p * (1 - p)) / count[k]!)), n: count[k]! };
  }
  return out;
}

/** "1: 44.7 %, 2: 31.4 %, 5: 29.4 %, 10: 31.0 %" (the presentations of Santoro et al.'s table that exist). */
export function formatByInstance(a: AccuracyByInstance): string {
  return ['inst1', 'inst2', 'inst5', 'inst10']
    .filter((k) => a[k])
    .map((k) => `${k.slice(4)}: ${(100 * a[k]!.mean).toFixed(1)} %`)
    .join(', ');
}
