/**
 * Task-parallel plumbing shared by the memory-family learners (core's `TaskParallelLearner`): their
 * weights live in tf.Variables, so the per-task gradient is `tf.variableGrads` of one episode's loss,
 * and the combining step is one Adam update of the variables with the mean of the per-task
 * gradients (summed in task-index order by core's `sumTaskGradients`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, argmaxRows, flatData, fromFlat, sumTaskGradients, toFlat, type Adam, type FlatParams, type Params, type StepContext, type TaskGradient } from '@metalearn/core';
import type { Variables } from './variables.js';

/**
 * The step's shared context, drawn in the main thread: a seed for the per-task random streams (one
 * draw from the learner's generator) and the batch size (so that a task knows whether it is the last
 * one, whose batch-norm running statistics the learners keep).
 */
export function stepContext(rng: Rng, n: number): StepContext {
  return { seed: `${rng.seed}/step/${rng.int(2 ** 31)}`, n };
}

/** Random stream of task `index` of a step: from the step seed and the task index only. */
export function taskRng(id: string, ctx: StepContext, index: number): Rng {
  if (typeof ctx.seed !== 'string') throw new Error(`${id}: step context lacks its 'seed' (call beginStep)`);
  return new Rng(`${ctx.seed}/task/${index}`);
}

/** Whether task `index` is the last task of the step (needs `ctx.n` from {@link stepContext}). */
export function isLastTask(id: string, ctx: StepContext, index: number): boolean {
  if (typeof ctx.n !== 'number') throw new Error(`${id}: step context lacks the batch size 'n' (call beginStep)`);
  return index === ctx.n - 1;
}

/**
 * Loss and gradient of `f` with respect to every variable it depends on, as flat arrays keyed like
 * `params` (variables without a gradient are left out, as the single-thread Adam step skips them).
 */
export function variableTaskGrads(params: Variables, f: () => tf.Scalar): { loss: number; grads: Record<string, Float32Array> } {
  const { value, grads } = tf.variableGrads(f, Object.values(params));
  try {
    const loss = value.dataSync()[0]!;
    const out: Record<string, Float32Array> = {};
    for (const k of Object.keys(params).sort()) {
      const g = grads[params[k]!.name];
      if (g) out[k] = flatData(g);
    }
    return { loss, grads: out };
  } finally {
    tf.dispose([value, ...Object.values(grads)]);
  }
}

/**
 * Sum the tasks (task-index order), divide by the batch size and apply one Adam step to the variables
 * (global-norm clipping as configured). Returns the sums and the gradient norm before clipping; a
 * non-finite gradient throws (Adam.applyToVariables) and changes nothing.
 */
export function applyMeanGradients(id: string, params: Variables, adam: Adam, tasks: TaskGradient[]): ReturnType<typeof sumTaskGradients> & { gradNorm: number } {
  const s = sumTaskGradients(tasks);
  const mean: Params = {};
  try {
    for (const k of Object.keys(s.grads).sort()) {
      const v = params[k];
      if (!v) throw new Error(`${id}.applyGradients: gradient for unknown parameter '${k}'`);
      mean[k] = tf.tidy(() => tf.div(tf.tensor(s.grads[k]!, v.shape, 'float32'), s.n));
    }
    const gradNorm = adam.applyToVariables(params, mean);
    return { ...s, gradNorm };
  } finally {
    tf.dispose(Object.values(mean));
  }
}

/** The batch-norm buffers of the last task (`tasks` has one entry per index 0..n-1). */
export function lastTaskBuffers(tasks: TaskGradient[]): Record<string, Float32Array> {
  let last: TaskGradient | undefined;
  for (const t of tasks) if (!last || t.index > last.index) last = t;
  return last?.buffers ?? {};
}

/** Replace `buffers[k]` by the flat values of `flat[k]` (same shape), disposing the old tensors. */
export function replaceBuffers(id: string, buffers: Params, flat: Record<string, Float32Array>): void {
  for (const [k, d] of Object.entries(flat)) {
    const old = buffers[k];
    if (!old) throw new Error(`${id}.applyGradients: unknown buffer '${k}'`);
    buffers[k] = tf.tensor(d, old.shape, 'float32');
    old.dispose();
  }
}

/** The flat values of the buffer updates a training-mode forward pass wrote into `updates`. */
export function flatUpdates(updates: Params): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const k of Object.keys(updates).sort()) out[k] = flatData(updates[k]!);
  return out;
}

/** Variables and buffers as flat arrays (keys `param:<k>` / `buffer:<k>`). */
export function variablesToFlat(params: Variables, buffers: Params = {}): FlatParams {
  const out: FlatParams = {};
  for (const [k, v] of Object.entries(toFlat(params))) out[`param:${k}`] = v;
  for (const [k, v] of Object.entries(toFlat(buffers))) out[`buffer:${k}`] = v;
  return out;
}

/**
 * Assign `param:<k>` entries to the variables and replace the `buffer:<k>` tensors (same keys and
 * shapes as {@link variablesToFlat} gave); keys listed in `extra` may be present and are left to the
 * caller.
 */
export function setFlatVariables(id: string, flat: FlatParams, params: Variables, buffers: Params = {}, extra: string[] = []): void {
  const want = [...Object.keys(params).map((k) => `param:${k}`), ...Object.keys(buffers).map((k) => `buffer:${k}`)].sort();
  const got = Object.keys(flat).filter((k) => !extra.includes(k)).sort();
  const cur = (k: string): tf.Tensor => (k.startsWith('param:') ? params[k.slice(6)]! : buffers[k.slice(7)]!);
  const bad = want.filter((k) => !flat[k] || flat[k]!.shape.join('x') !== cur(k).shape.join('x'));
  if (bad.length || got.length !== want.length) {
    throw new Error(`${id}.setParams: expected [${want.join(', ')}], got [${got.join(', ')}]${bad.length ? `; missing or wrong shape: ${bad.join(', ')}` : ''}`);
  }
  const sub: FlatParams = {};
  for (const k of got) sub[k] = flat[k]!;
  const t = fromFlat(sub);
  for (const [k, v] of Object.entries(t)) {
    if (k.startsWith('param:')) {
      params[k.slice(6)]!.assign(v);
      v.dispose();
    } else {
      const b = k.slice(7);
      buffers[b]!.dispose();
      buffers[b] = v;
    }
  }
}

/**
 * One episode's task gradient: `run` computes the episode's loss and query logits (collecting
 * batch-norm running-statistics updates into `updates` when given); the last task of the step
 * (`isLastTask`) returns those statistics as buffers.
 */
export function episodeTaskGradient(
  id: string,
  params: Variables,
  ctx: StepContext,
  index: number,
  queryLabels: ArrayLike<number>,
  run: (updates: Params | undefined) => { loss: tf.Scalar; logits: tf.Tensor },
): TaskGradient {
  const updates: Params = {};
  const wantUpdates = isLastTask(id, ctx, index);
  let pred: Int32Array | undefined;
  try {
    const { loss, grads } = variableTaskGrads(params, () => {
      const { loss, logits } = run(wantUpdates ? updates : undefined);
      pred = argmaxRows(logits.dataSync(), logits.shape[0]!, logits.shape[1]!);
      return loss;
    });
    let correct = 0;
    for (let j = 0; j < queryLabels.length; j++) if (pred![j] === queryLabels[j]) correct++;
    return { index, loss, correct, total: queryLabels.length, grads, ...(wantUpdates ? { buffers: flatUpdates(updates) } : {}) };
  } finally {
    tf.dispose(Object.values(updates));
  }
}
