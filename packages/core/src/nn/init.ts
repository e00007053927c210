import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';
import type { InitScheme, Params } from './types.js';

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Tensor of U(lo, hi) values drawn from `rng`. */
export function uniformTensor(rng: Rng, shape: number[], lo: number, hi: number): tf.Tensor {
  return tf.tensor(rng.uniformArray(size(shape), lo, hi), shape, 'float32');
}

/** Tensor of N(mean, std²) values drawn from `rng`. */
export function normalTensor(rng: Rng, shape: number[], std: number, mean = 0): tf.Tensor {
  return tf.tensor(rng.normalArray(size(shape), mean, std), shape, 'float32');
}

/**
 * Weight (and optional bias) for a layer with the given fans, PyTorch-style:
 * - 'pytorch': weight and bias ~ U(±1/√fanIn) (what nn.Linear / nn.Conv*d do by default:
 *   kaiming_uniform with a=√5)
 * - 'he': weight ~ N(0, 2/fanIn), bias 0
 * - 'glorot': weight ~ U(±√(6/(fanIn+fanOut))), bias 0
 */
export function initWeightBias(
  rng: Rng,
  scheme: InitScheme,
  weightShape: number[],
  fanIn: number,
  fanOut: number,
  biasShape: number[] | null,
): Params {
  const out: Params = {};
  if (scheme === 'pytorch') {
    const b = 1 / Math.sqrt(fanIn);
    out.weight = uniformTensor(rng, weightShape, -b, b);
    if (biasShape) out.bias = uniformTensor(rng, biasShape, -b, b);
  } else if (scheme === 'he') {
    out.weight = normalTensor(rng, weightShape, Math.sqrt(2 / fanIn));
    if (biasShape) out.bias = tf.zeros(biasShape);
  } else if (scheme === 'glorot') {
    const b = Math.sqrt(6 / (fanIn + fanOut));
    out.weight = uniformTensor(rng, weightShape, -b, b);
    if (biasShape) out.bias = tf.zeros(biasShape);
  } else {
    throw new Error(`unknown init scheme '${scheme as string}' (expected 'pytorch' | 'he' | 'glorot')`);
  }
  return out;
}
