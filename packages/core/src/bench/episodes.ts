import * as tf from '@tensorflow/tfjs-core';
import type { Episode } from '../contracts.js';
import type { Rng } from '../rng.js';
import { prod } from '../onnx/builder.js';

/**
 * A random episode for benchmarks: standard-normal examples of `shape`, `ways` classes with `shots`
 * support and `queries` query examples each, labels in class order; `dispose()` frees its tensors.
 */
export function randomEpisode(rng: Rng, o: { ways: number; shots: number; queries: number; shape: readonly number[] }): Episode {
  const images = (n: number) => tf.tensor(rng.normalArray(n * prod(o.shape)), [n, ...o.shape]);
  const labels = (per: number) => Int32Array.from({ length: o.ways * per }, (_, i) => Math.floor(i / per));
  const support = { x: images(o.ways * o.shots), y: labels(o.shots) };
  const query = { x: images(o.ways * o.queries), y: labels(o.queries) };
  return { ways: o.ways, shots: o.shots, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}
