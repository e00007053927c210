/**
 * Differentiable ops for the project's layers. Each one has first- and second-order gradients on
 * every backend (wasm, cpu, tensorflow) through the project's gradient registry (gradients.ts).
 * Use these (or plain tfjs ops with registered gradients) rather than `tf.fused.*`, whose built-in
 * custom gradients call Conv2DBackprop* kernels directly (missing on wasm, not differentiable).
 */
import * as tf from '@tensorflow/tfjs-core';
import { meanAllButLast } from './util.js';

export type Padding = 'same' | 'valid' | number;

/** 2-D convolution, NHWC input [N,H,W,Cin], filter [kh,kw,Cin,Cout]. */
export function conv2d(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  stride: number | [number, number] = 1,
  pad: Padding = 'same',
  dilation: number | [number, number] = 1,
): tf.Tensor4D {
  return tf.conv2d(x, filter, stride, pad as 'same', 'NHWC', dilation);
}

/** 1-D convolution, input [N,L,Cin], filter [k,Cin,Cout] (tfjs runs it as a conv2d of height 1). */
export function conv1d(x: tf.Tensor3D, filter: tf.Tensor3D, stride = 1, pad: Padding = 'same', dilation = 1): tf.Tensor3D {
  return tf.conv1d(x, filter, stride, pad as 'same', 'NWC', dilation);
}

/**
 * Max pooling over k x k windows (default stride k, 'valid' = floor like PyTorch's max_pool2d).
 * Differentiable to any order: the registered MaxPool gradient is built from reshape/mask ops.
 */
export function maxPool2d(x: tf.Tensor4D, k: number | [number, number], stride?: number | [number, number], pad: Padding = 'valid'): tf.Tensor4D {
  return tf.maxPool(x, k, stride ?? k, pad as 'valid');
}

/** Average pooling (divides by the number of in-bounds elements), differentiable to any order. */
export function avgPool2d(x: tf.Tensor4D, k: number | [number, number], stride?: number | [number, number], pad: Padding = 'valid'): tf.Tensor4D {
  return tf.avgPool(x, k, stride ?? k, pad as 'valid');
}

/** Global average pooling [N,H,W,C] -> [N,C]. */
export function globalAvgPool(x: tf.Tensor4D): tf.Tensor2D {
  return tf.mean(x, [1, 2]) as tf.Tensor2D;
}

/**
 * Training-mode batch normalisation over every axis but the last (batch statistics, biased variance,
 * as PyTorch's F.batch_norm(training=True)). Returns the normalised output and the batch statistics
 * (for running averages). Gradients flow through the statistics (to any order).
 */
export function batchNormTrain(
  x: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps = 1e-5,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  // statistics as pooled sums (util.ts sumAllButLast): reductions over leading axes are slow on wasm
  const mean = meanAllButLast(x); // [C]
  const d = tf.sub(x, mean);
  const variance = meanAllButLast(tf.square(d)); // [C]
  const scale = tf.mul(tf.rsqrt(tf.add(variance, eps)), gamma);
  const y = tf.add(tf.mul(d, scale), beta);
  return { y, mean, variance };
}

/** Inference-mode batch normalisation with given statistics. */
export function batchNormInfer(x: tf.Tensor, mean: tf.Tensor1D, variance: tf.Tensor1D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): tf.Tensor {
  return tf.batchNorm(x, mean, variance, beta, gamma, eps);
}

/** Fully connected layer: x [N,in] @ w [in,out] + b [out]. */
export function dense(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  const y = tf.matMul(x, w) as tf.Tensor2D;
  return b ? (tf.add(y, b) as tf.Tensor2D) : y;
}

/**
 * log-softmax along `axis` as x - logSumExp(x), from plain ops: differentiable to any order
 * (tf.logSoftmax is a customGrad op whose second-order gradient is incomplete).
 */
export function logSoftmax(logits: tf.Tensor, axis = -1): tf.Tensor {
  return tf.sub(logits, tf.logSumExp(logits, axis, true));
}

/** Mean softmax cross-entropy of logits [N,C] against integer labels (computed with logSoftmax). */
export function crossEntropy(logits: tf.Tensor2D, labels: Int32Array | number[] | tf.Tensor1D): tf.Scalar {
  const n = logits.shape[0];
  const c = logits.shape[1];
  const lab = labels instanceof tf.Tensor ? labels : tf.tensor1d(Array.from(labels), 'int32');
  const oh = tf.oneHot(tf.cast(lab, 'int32') as tf.Tensor1D, c);
  return tf.div(tf.neg(tf.sum(tf.mul(oh, logSoftmax(logits)))), n) as tf.Scalar;
}
