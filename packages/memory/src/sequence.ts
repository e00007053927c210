/**
 * Episodes -> time-ordered sequences for the Santoro protocol: all support and query items of an
 * episode, shuffled; the input at step t is (x_t, one-hot y_{t-1}) with y_{-1} = 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Episode, Rng } from '@metalearn/core';
import type { Params } from './core-nn.js';
import { oneHotF } from './addressing.js';
import { stepPrep, type SeqState, type SequenceModel } from './models.js';

export interface SequenceBatch {
  /** [B, T, D] flattened inputs */
  x: tf.Tensor3D;
  /** [B, T, C] one-hot of the previous step's label (zeros at t = 0) */
  yPrev: tf.Tensor3D;
  /** [B*T] label at each step, row-major (b, t) */
  target: Int32Array;
  /** [B*T] 1-based count of how many times the step's class has been shown so far (incl. this step) */
  instance: Int32Array;
  B: number;
  T: number;
  dispose(): void;
}

/** Order of one episode's items: indices into concat(support, query), shuffled by `rng`. */
export function sequenceOrder(n: number, rng: Rng): number[] {
  return rng.shuffle(Array.from({ length: n }, (_, i) => i));
}

/**
 * Episodes as one batch of sequences. `rng` shuffles each episode's items: one generator for all
 * (drawn in episode order), or one per episode (`(e) => Rng`, e the episode's position in `episodes`).
 */
export function episodesToSequences(episodes: Episode[], classes: number, rng: Rng | ((e: number) => Rng), shuffle = true): SequenceBatch {
  if (episodes.length === 0) throw new Error('episodesToSequences: empty meta-batch');
  const xs: tf.Tensor2D[] = [];
  const ys: number[][] = [];
  let T = -1;
  let D = -1;
  for (const [e, ep] of episodes.entries()) {
    if (ep.ways > classes) throw new Error(`episode ${e}: ${ep.ways} ways but the learner has ${classes} output classes (config 'classes')`);
    const labels = [...ep.support.y, ...ep.query.y];
    for (const l of labels) if (l < 0 || l >= ep.ways) throw new Error(`episode ${e}: label ${l} outside 0..${ep.ways - 1}`);
    if (T >= 0 && labels.length !== T) throw new Error(`episode ${e}: ${labels.length} items, but episode 0 has ${T}; a meta-batch needs equal lengths`);
    T = labels.length;
    const order = shuffle ? sequenceOrder(T, typeof rng === 'function' ? rng(e) : rng) : labels.map((_, i) => i);
    const x = tf.tidy(() => {
      const parts = [ep.support.x, ep.query.x].filter((t) => t.shape[0] > 0).map((t) => tf.reshape(t, [t.shape[0], -1]));
      const all = parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
      return tf.gather(all, tf.tensor1d(order, 'int32')) as tf.Tensor2D;
    });
    if (D >= 0 && x.shape[1] !== D) throw new Error(`episode ${e}: examples have ${x.shape[1]} values, episode 0 has ${D}`);
    D = x.shape[1];
    xs.push(x);
    ys.push(order.map((i) => labels[i]!));
  }
  return buildBatch(xs, ys, classes);
}

/** Build a batch from per-sequence inputs [T, D] and label lists (all of the same length T). */
export function buildBatch(xs: tf.Tensor2D[], ys: number[][], classes: number): SequenceBatch {
  const B = xs.length;
  const T = ys[0]!.length;
  const target = new Int32Array(B * T);
  const instance = new Int32Array(B * T);
  const yPrevData = new Float32Array(B * T * classes);
  for (let b = 0; b < B; b++) {
    const seen = new Map<number, number>();
    for (let t = 0; t < T; t++) {
      const y = ys[b]![t]!;
      target[b * T + t] = y;
      const n = (seen.get(y) ?? 0) + 1;
      seen.set(y, n);
      instance[b * T + t] = n;
      if (t > 0) yPrevData[(b * T + t) * classes + ys[b]![t - 1]!] = 1;
    }
  }
  const x = tf.stack(xs) as tf.Tensor3D;
  for (const t of xs) t.dispose();
  const yPrev = tf.tensor3d(yPrevData, [B, T, classes]);
  return { x, yPrev, target, instance, B, T, dispose: () => (x.dispose(), yPrev.dispose()) };
}

/** Run a model over whole sequences; returns logits [B, T, C] and the final state. */
export function runSequence(model: SequenceModel, params: Params, x: tf.Tensor3D, yPrev: tf.Tensor3D, state0?: SeqState): { logits: tf.Tensor3D; state: SeqState } {
  const xsT = tf.unstack(x, 1) as tf.Tensor2D[];
  const ysT = tf.unstack(yPrev, 1) as tf.Tensor2D[];
  let state = state0 ?? model.initialState(x.shape[0]);
  const prep = model.prepare(params, x, yPrev);
  const outs: tf.Tensor2D[] = [];
  for (let t = 0; t < xsT.length; t++) {
    const r = model.step(params, state, xsT[t]!, ysT[t]!, stepPrep(prep, t));
    state = r.state;
    outs.push(r.logits);
  }
  return { logits: tf.stack(outs, 1) as tf.Tensor3D, state };
}

/** Mean softmax cross-entropy over all (b, t) positions. logits [B, T, C], target [B*T]. */
export function sequenceLoss(logits: tf.Tensor3D, target: Int32Array): tf.Scalar {
  const [B, T, C] = logits.shape;
  const flat = tf.reshape(logits, [B * T, C]);
  const oh = oneHotF(target, C);
  return tf.neg(tf.mean(tf.sum(tf.mul(oh, tf.logSoftmax(flat)), 1))) as tf.Scalar;
}

/** Accuracy per instance number (1-based) over predictions pred [B*T]. */
export function accuracyByInstance(pred: ArrayLike<number>, target: Int32Array, instance: Int32Array, maxInstance = 10): { correct: number[]; count: number[] } {
  const correct = new Array<number>(maxInstance + 1).fill(0);
  const count = new Array<number>(maxInstance + 1).fill(0);
  for (let i = 0; i < target.length; i++) {
    const k = instance[i]!;
    if (k > maxInstance) continue;
    count[k]!++;
    if (pred[i] === target[i]) correct[k]!++;
  }
  return { correct, count };
}
