import * as tf from '@tensorflow/tfjs-core';
import type { Params, Task } from './types.js';
import type { InnerLoopSpec } from './maml.js';
import { innerLoop, splitMeta } from './maml.js';
import { keysOf } from './params.js';

export interface ReptileTaskResult {
  /** φ − θ for every network key (caller disposes) */
  delta: Params;
  /** query loss after adaptation */
  loss: number;
  /** query predictions after adaptation (caller disposes) */
  queryOut: tf.Tensor;
}

/**
 * Reptile (Nichol et al. 2018) for one task: adapt θ → φ with `spec.steps` first-order steps on the
 * task's training data (support, plus query when `useQuery`), and return the direction φ − θ.
 * The outer update is θ ← θ + ε·mean_tasks(φ − θ).
 */
export function reptileTaskDelta(spec: InnerLoopSpec, meta: Params, task: Task, useQuery = false): ReptileTaskResult {
  const { net } = splitMeta(meta);
  const [x, y] = useQuery
    ? [tf.concat([task.xs, task.xq], 0), tf.concat([task.ys, task.yq], 0)]
    : [task.xs, task.ys];
  const phi = innerLoop(spec, net, x, y, false);
  const ctx = spec.ctx ?? { training: true };
  const delta: Params = {};
  for (const k of keysOf(net)) delta[k] = tf.sub(phi[k]!, net[k]!);
  const queryOut = tf.tidy(() => spec.net.apply(phi, task.xq, ctx));
  const lt = spec.loss(queryOut, task.yq);
  const loss = lt.dataSync()[0]!;
  lt.dispose();
  if (spec.steps > 0) for (const k of keysOf(phi)) if (phi[k] !== net[k]) phi[k]!.dispose();
  if (useQuery) {
    x.dispose();
    y.dispose();
  }
  return { delta, loss, queryOut };
}
