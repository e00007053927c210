/**
 * Data augmentation of training episodes. Santoro et al. (2016) augment Omniglot with rotations (as
 * new classes, `loadOmniglot({ rotations: true })`) and small random translations of every image;
 * the translations are here. Deterministic: the same `Rng` state gives the same shifts.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Episode, Rng } from '@metalearn/core';
import { DataError } from './errors.js';

export interface AugmentOptions {
  /** shift every image by a random whole number of pixels in [−translate, translate] on each axis (zero fill); 0 = off */
  translate?: number;
}

function checkShift(maxShift: number): void {
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new DataError(`augment: translate must be a whole number of pixels >= 0, got ${maxShift}`);
}

/**
 * Random translation of every image of `x` [n, h, w, c] by (dy, dx), each drawn uniformly from
 * [−maxShift, maxShift] (dy first, then dx, image by image), pixels shifted in from outside are 0.
 * Returns a new tensor (the input is not disposed); maxShift 0 returns a copy.
 */
export function translateImages(x: tf.Tensor, maxShift: number, rng: Rng): tf.Tensor {
  checkShift(maxShift);
  if (x.rank !== 4) throw new DataError(`augment: translate needs images [n, height, width, channels], got a tensor of shape [${x.shape}]`);
  if (maxShift === 0) return tf.clone(x);
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const src = x.dataSync();
  const out = new Float32Array(src.length);
  const row = w * c;
  for (let i = 0; i < n; i++) {
    const dy = rng.int(2 * maxShift + 1) - maxShift;
    const dx = rng.int(2 * maxShift + 1) - maxShift;
    const base = i * h * row;
    // columns q of the output that read a source column q − dx inside the image
    const q0 = Math.max(0, dx);
    const q1 = Math.min(w, w + dx);
    if (q1 <= q0) continue;
    for (let r = 0; r < h; r++) {
      const sr = r - dy;
      if (sr < 0 || sr >= h) continue;
      const to = base + r * row + q0 * c;
      const from = base + sr * row + (q0 - dx) * c;
      out.set(src.subarray(from, from + (q1 - q0) * c), to);
    }
  }
  return tf.tensor(out, x.shape, 'float32');
}

/**
 * The episode with its support and query images augmented (a new episode owning new tensors; the
 * input episode is disposed). Support images are drawn before query images.
 */
export function augmentEpisode(e: Episode, opts: AugmentOptions, rng: Rng): Episode {
  const shift = opts.translate ?? 0;
  checkShift(shift);
  if (shift === 0) return e;
  const sx = translateImages(e.support.x, shift, rng);
  const qx = translateImages(e.query.x, shift, rng);
  e.dispose?.();
  return { ...e, support: { x: sx, y: e.support.y }, query: { x: qx, y: e.query.y }, dispose: () => tf.dispose([sx, qx]) };
}
