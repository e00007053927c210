import type * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';
import type { OnnxGraphBuilder } from '../onnx/builder.js';
import type { ExportContext } from '../onnx/context.js';

/**
 * Named tensors. Inside a layer the keys are local (`weight`, `bias`, `running_mean`, ...; no dots);
 * at model level they are `${layer.name}.${local}` (layer names may contain dots).
 */
export type Params = Record<string, tf.Tensor>;

/** Runtime options of a forward pass. */
export interface ApplyContext {
  /** training mode: batch-norm uses batch statistics and reports running-stat updates; dropout is active */
  training: boolean;
  /**
   * Buffers (batch-norm running mean/var). At model level (Sequential.apply) keys are
   * `${layer}.${local}`; a layer's apply sees its own local view.
   */
  state?: Params;
  /**
   * If given, training-mode batch-norm writes its new running statistics here (same keys as
   * `state`). The tensors are `tf.keep()`-ed so they survive `tf.tidy`/`tf.grads`: the caller owns
   * them (merge them into the state and dispose the old buffers).
   */
  updates?: Params;
  /** randomness for dropout (required when training with a dropout rate > 0) */
  rng?: Rng;
  /** force batch statistics in batch-norm even when not training (transductive eval, as in MAML) */
  batchStats?: boolean;
}

/**
 * A functional layer: a small spec whose parameters live outside it. `apply` must be pure and
 * differentiable with respect to `p` (MAML differentiates through adapted copies of the weights).
 * Shapes are per example (no batch dimension); a dimension of -1 is dynamic (e.g. sequence length).
 */
export interface Layer {
  readonly name: string;
  readonly kind: string;
  /** per-example output shape for a per-example input shape; throws with a clear message if the input does not fit */
  outputShape(inputShape: number[]): number[];
  /** shapes of the trainable parameters (local keys); optional for custom layers */
  paramShapes?(inputShape: number[]): Record<string, number[]>;
  /** fresh trainable parameters (local keys), drawn from `rng` only */
  init(rng: Rng, inputShape: number[]): Params;
  /** fresh buffers (local keys), e.g. batch-norm running mean / var */
  initState?(inputShape: number[]): Params;
  /** forward pass on a batch `x` of shape [n, ...inputShape]; `p` and `ctx.state` are local views */
  apply(p: Params, x: tf.Tensor, ctx: ApplyContext): tf.Tensor;
  /**
   * Emit the layer's ONNX nodes reading value `input`; returns the output value's name. `p` and
   * `ctx.state` are local views; `ctx.shape` is the per-example tfjs shape of `input` and
   * `ctx.layout` tells whether `input` is channels-last (as in tfjs) or channels-first (as ONNX
   * Conv/Pool want): call `ctx.channelsFirst(input)` / `ctx.channelsLast(input)` to get the layout
   * you need (they insert a Transpose only when necessary). Initializers should be named
   * `${this.name}.${local}`.
   */
  toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string;
}

/** Weight initialisation schemes: 'pytorch' = PyTorch's Linear/Conv default (U(±1/√fan_in) for weight and bias), 'he' = N(0, 2/fan_in) with zero bias, 'glorot' = U(±√(6/(fan_in+fan_out))) with zero bias. */
export type InitScheme = 'pytorch' | 'he' | 'glorot';
