import * as tf from '@tensorflow/tfjs-core';
import type { Episode, MetaLearner, StepResult } from '../contracts.js';

/** A tensor as a plain typed array plus its shape (what crosses a thread boundary). */
export interface FlatTensor {
  shape: number[];
  data: Float32Array;
}

/** Named flat tensors. */
export type FlatParams = Record<string, FlatTensor>;

/**
 * The result of one task (episode) of a meta-batch, computed wherever the task ran (main thread or a
 * worker). Everything here is per task, never pre-summed, so that the main thread can combine the
 * tasks in task-index order and get the same sums whatever the number of workers.
 */
export interface TaskGradient {
  /** index of the task in the meta-batch (0-based) */
  index: number;
  /** the task's outer loss */
  loss: number;
  /** query predictions that were correct, and query size */
  correct: number;
  total: number;
  /**
   * Per-parameter gradient (or update direction, e.g. Reptile's φ − θ) of this task alone; the
   * learner divides the sum by the batch size.
   */
  grads: Record<string, Float32Array>;
  /** additive per-task numbers (the learner averages them), e.g. iMAML's CG residual */
  metrics?: Record<string, number>;
  /** per-task buffers to merge (e.g. batch-norm running statistics after this task) */
  buffers?: Record<string, Float32Array>;
  /**
   * Consecutive tasks this result covers: tasks `index` … `index + count − 1` (default 1). A learner
   * whose tasks share one batched computation (the MANN / LSTM sequence learners run a worker's share
   * of episodes as one batch) returns one result per share, holding the sums over its tasks.
   */
  count?: number;
}

/**
 * A learner whose meta-training step splits into independent per-task computations and one combining
 * update. `metaTrainStep(batch)` of such a learner is exactly
 * `applyGradients(taskGradients(batch, 0, beginStep(batch)), ...)`, so running the tasks in worker
 * threads ({@link WorkerPool}) changes nothing but the float summation order (and not even that, since
 * tasks are summed in index order).
 *
 * Randomness that a task uses must come from `StepContext` and the task index only (never from the
 * thread that runs it).
 */
export interface TaskParallelLearner extends MetaLearner {
  /**
   * Validate the meta-batch and draw what the tasks of this step share (JSON-able, e.g. a seed for
   * per-task random streams). Advances the learner's own random state, in the main thread only.
   */
  beginStep(batch: Episode[]): StepContext;
  /** Per-task results for `episodes`, which are tasks `first`, `first + 1`, ... of the meta-batch. */
  taskGradients(episodes: Episode[], first: number, ctx: StepContext): TaskGradient[];
  /**
   * Combine the per-task results of the whole batch (sorted by index, one per task) and apply the one
   * optimiser step; returns the step's result (mean loss, accuracy, metrics).
   */
  applyGradients(tasks: TaskGradient[], ctx: StepContext): StepResult;
  /** Everything a worker needs to compute task gradients: parameters and buffers, as flat arrays. */
  getParams(): FlatParams;
  /** Replace parameters and buffers with `p` (a worker's copy of the main thread's learner). */
  setParams(p: FlatParams): void;
}

/** JSON-able data shared by all tasks of one step. */
export type StepContext = Record<string, string | number | boolean>;

export function isTaskParallel(l: MetaLearner): l is TaskParallelLearner {
  const x = l as Partial<TaskParallelLearner>;
  return (
    typeof x.beginStep === 'function' &&
    typeof x.taskGradients === 'function' &&
    typeof x.applyGradients === 'function' &&
    typeof x.getParams === 'function' &&
    typeof x.setParams === 'function'
  );
}

/** A copy of a tensor's values as a fresh, transferable Float32Array. */
export function flatData(t: tf.Tensor): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`flatData: expected a float32 tensor, got ${t.dtype}`);
  // dataSync may return the backend's own storage (cpu backend): always copy
  return new Float32Array(t.dataSync() as Float32Array);
}

export function toFlat(ts: Record<string, tf.Tensor>): FlatParams {
  const out: FlatParams = {};
  for (const k of Object.keys(ts).sort()) out[k] = { shape: [...ts[k]!.shape], data: flatData(ts[k]!) };
  return out;
}

export function fromFlat(p: FlatParams): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const k of Object.keys(p).sort()) out[k] = tf.tensor(p[k]!.data, p[k]!.shape, 'float32');
  return out;
}

/**
 * Sum `tasks` (together covering every task index 0..n-1 exactly once; a result covers `count ?? 1`
 * consecutive tasks) in task-index order: gradients, losses, correct/total counts, metrics and
 * buffers. The order is fixed, so the sums do not depend on which thread computed which task or when
 * it finished. `n` is the number of tasks covered.
 */
export function sumTaskGradients(tasks: TaskGradient[]): {
  n: number;
  loss: number;
  correct: number;
  total: number;
  grads: Record<string, Float32Array>;
  metrics: Record<string, number>;
  buffers: Record<string, Float32Array>;
} {
  const sorted = [...tasks].sort((a, b) => a.index - b.index);
  const covered = tasks.reduce((s, t) => s + (t.count ?? 1), 0);
  let next = 0;
  for (const t of sorted) {
    const c = t.count ?? 1;
    if (t.index !== next || !Number.isInteger(c) || c < 1) {
      throw new Error(`sumTaskGradients: task indices must be 0..${covered - 1} once each, got [${tasks.map((x) => (x.count && x.count !== 1 ? `${x.index}(+${x.count})` : `${x.index}`)).join(', ')}]`);
    }
    next += c;
  }
  if (!sorted.length) throw new Error('sumTaskGradients: no tasks');
  const keys = Object.keys(sorted[0]!.grads).sort();
  const bufKeys = Object.keys(sorted[0]!.buffers ?? {}).sort();
  const grads: Record<string, Float32Array> = {};
  const buffers: Record<string, Float32Array> = {};
  for (const k of keys) grads[k] = new Float32Array(sorted[0]!.grads[k]!.length);
  for (const k of bufKeys) buffers[k] = new Float32Array(sorted[0]!.buffers![k]!.length);
  let loss = 0;
  let correct = 0;
  let total = 0;
  const metrics: Record<string, number> = {};
  for (const t of sorted) {
    const tk = Object.keys(t.grads).sort();
    if (tk.join('\n') !== keys.join('\n')) throw new Error(`sumTaskGradients: task ${t.index} has gradients for [${tk.join(', ')}], task 0 for [${keys.join(', ')}]`);
    for (const k of keys) addInto(grads[k]!, t.grads[k]!, `gradient '${k}' of task ${t.index}`);
    for (const k of bufKeys) {
      const b = t.buffers?.[k];
      if (!b) throw new Error(`sumTaskGradients: task ${t.index} lacks buffer '${k}'`);
      addInto(buffers[k]!, b, `buffer '${k}' of task ${t.index}`);
    }
    loss += t.loss;
    correct += t.correct;
    total += t.total;
    for (const [k, v] of Object.entries(t.metrics ?? {})) metrics[k] = (metrics[k] ?? 0) + v;
  }
  return { n: covered, loss, correct, total, grads, metrics, buffers };
}

function addInto(acc: Float32Array, x: Float32Array, what: string): void {
  if (x.length !== acc.length) throw new Error(`sumTaskGradients: ${what} has ${x.length} values, expected ${acc.length}`);
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + x[i]!;
}

/** Wire format of an episode: input values as flat arrays, labels as Int32Array. */
export interface WireEpisode {
  ways: number;
  shots: number;
  support: { x: FlatTensor; y: Int32Array };
  query: { x: FlatTensor; y: Int32Array };
}

export function episodeToWire(e: Episode): WireEpisode {
  return {
    ways: e.ways,
    shots: e.shots,
    support: { x: { shape: [...e.support.x.shape], data: flatData(e.support.x) }, y: Int32Array.from(e.support.y) },
    query: { x: { shape: [...e.query.x.shape], data: flatData(e.query.x) }, y: Int32Array.from(e.query.y) },
  };
}

export function episodeFromWire(w: WireEpisode): Episode {
  const sx = tf.tensor(w.support.x.data, w.support.x.shape, 'float32');
  const qx = tf.tensor(w.query.x.data, w.query.x.shape, 'float32');
  return {
    ways: w.ways,
    shots: w.shots,
    support: { x: sx, y: w.support.y },
    query: { x: qx, y: w.query.y },
    dispose() {
      sx.dispose();
      qx.dispose();
    },
  };
}

/** The transferable buffers of a value built from the types above (for postMessage transfer lists). */
export function transferablesOf(...values: unknown[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  const visit = (v: unknown): void => {
    if (!v || typeof v !== 'object') return;
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) out.add(v.buffer);
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(v)) visit(x);
  };
  values.forEach(visit);
  return [...out];
}
