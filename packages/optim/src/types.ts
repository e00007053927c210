import type * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '@metalearn/core';

/** Named tensors (model-level keys such as `conv1.weight`). */
export type Params = Record<string, tf.Tensor>;

/** Forward-pass options; structurally compatible with core's nn `ApplyContext`. */
export interface NetContext {
  training: boolean;
  state?: Params;
  updates?: Params;
  rng?: Rng;
  batchStats?: boolean;
}

/**
 * The functional network the optimisation-based learners adapt. `apply` must be pure and
 * differentiable in `params` (to second order for MAML / Meta-SGD / iMAML). Core's `Sequential`
 * (and its `mlp` / `conv4` builders) satisfy this interface.
 */
export interface FunctionalNet {
  init(rng: Rng): Params;
  initState?(): Params;
  apply(params: Params, x: tf.Tensor, ctx: NetContext): tf.Tensor;
}

/** Task loss: scalar loss of predictions `out` against targets `y`. */
export type TaskLoss = (out: tf.Tensor, y: tf.Tensor) => tf.Scalar;

/** One task for the functional algorithms: support (inner) and query (outer) data. */
export interface Task {
  xs: tf.Tensor;
  ys: tf.Tensor;
  xq: tf.Tensor;
  yq: tf.Tensor;
}
