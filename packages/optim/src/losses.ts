import * as tf from '@tensorflow/tfjs-core';

/** Mean softmax cross-entropy of logits [n, ways] against integer labels (int32 tensor [n]). */
export function crossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const ways = logits.shape[logits.shape.length - 1]!;
    const oh = tf.oneHot(tf.cast(labels, 'int32') as tf.Tensor1D, ways);
    const logp = tf.logSoftmax(logits as tf.Tensor2D);
    return tf.neg(tf.mean(tf.sum(tf.mul(oh, logp), -1))) as tf.Scalar;
  });
}

/** Mean squared error. */
export function mse(pred: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(pred, tf.reshape(target, pred.shape))) as tf.Scalar);
}

/** Fraction of argmax(logits) equal to labels. */
export function accuracyOf(logits: tf.Tensor, labels: Int32Array | tf.Tensor): number {
  const pred = tf.tidy(() => tf.argMax(logits, -1)).dataSync();
  const y = labels instanceof Int32Array ? labels : (labels.dataSync() as Int32Array);
  let ok = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) ok++;
  return y.length ? ok / y.length : 0;
}
