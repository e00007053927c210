import * as tf from '@tensorflow/tfjs-core';

/**
 * exp(x) whose gradient reads the saved INPUT. tfjs saves an op's outputs with a clone recorded on
 * the tape before the op itself, which drops them from second-order graphs; `tf.logSoftmax` is a
 * customGrad that saves its output, so its gradient cannot be differentiated again. This exp (and the
 * log-softmax below, built from it) is differentiable to any order.
 */
export const expSecondOrder: (x: tf.Tensor) => tf.Tensor = tf.customGrad(((x: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
  save([x]);
  return { value: tf.exp(x), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, expSecondOrder(saved[0]!)) };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

/** log-softmax over the last axis, differentiable to any order (the max shift is a constant: its derivative is exactly 0). */
export function logSoftmax(logits: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const m = tf.max(logits, -1, true);
    const shifted = tf.sub(logits, m);
    return tf.sub(shifted, tf.log(tf.sum(expSecondOrder(shifted), -1, true)));
  });
}

/** Mean softmax cross-entropy of logits [n, ways] against integer labels (int32 tensor [n]). */
export function crossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const ways = logits.shape[logits.shape.length - 1]!;
    const oh = tf.oneHot(tf.cast(labels, 'int32') as tf.Tensor1D, ways);
    return tf.neg(tf.mean(tf.sum(tf.mul(oh, logSoftmax(logits)), -1))) as tf.Scalar;
  });
}

/** Mean squared error. */
export function mse(pred: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(pred, tf.reshape(target, pred.shape))) as tf.Scalar);
}

/** Fraction of argmax(logits) equal to labels. */
export function accuracyOf(logits: tf.Tensor, labels: Int32Array | tf.Tensor): number {
  const pt = tf.tidy(() => tf.argMax(logits, -1));
  const pred = pt.dataSync();
  pt.dispose();
  const y = labels instanceof Int32Array ? labels : (labels.dataSync() as Int32Array);
  let ok = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) ok++;
  return y.length ? ok / y.length : 0;
}
