import { describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, type Episode } from '@metalearn/core';
import { DataError, augmentEpisode, translateImages } from '../src/index.js';

/** x [n, h, w, c] with distinct non-zero values, so every shift is recognisable. */
function ramp(n: number, h: number, w: number, c: number): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from({ length: n * h * w * c }, (_, i) => i + 1), [n, h, w, c]);
}

/** image i of src shifted by (dy, dx), zero fill — the definition, pixel by pixel */
function shifted(src: Float32Array, i: number, h: number, w: number, c: number, dy: number, dx: number): Float32Array {
  const out = new Float32Array(h * w * c);
  for (let r = 0; r < h; r++)
    for (let q = 0; q < w; q++)
      for (let k = 0; k < c; k++) {
        const sr = r - dy;
        const sq = q - dx;
        if (sr >= 0 && sr < h && sq >= 0 && sq < w) out[(r * w + q) * c + k] = src[((i * h + sr) * w + sq) * c + k]!;
      }
  return out;
}

describe('translateImages', () => {
  it('shifts each image by the (dy, dx) its generator draws, with zero fill', () => {
    const [n, h, w, c] = [6, 5, 7, 2];
    const x = ramp(n, h, w, c);
    const src = x.dataSync() as Float32Array;
    const y = translateImages(x, 2, new Rng('t'));
    const got = y.dataSync();
    // the same generator gives the shifts: dy then dx per image
    const rng = new Rng('t');
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const dy = rng.int(5) - 2;
      const dx = rng.int(5) - 2;
      seen.add(`${dy},${dx}`);
      const want = shifted(src, i, h, w, c, dy, dx);
      expect(Array.from(got.subarray(i * h * w * c, (i + 1) * h * w * c))).toEqual(Array.from(want));
    }
    expect(seen.size).toBeGreaterThan(1); // the images were not all shifted alike
    expect(y.shape).toEqual(x.shape);
    tf.dispose([x, y]);
  });

  it('is deterministic per generator state; 0 copies; shifts larger than the image give zeros', () => {
    const x = ramp(4, 3, 3, 1);
    const a = translateImages(x, 1, new Rng(5));
    const b = translateImages(x, 1, new Rng(5));
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    const same = translateImages(x, 0, new Rng(5));
    expect(Array.from(same.dataSync())).toEqual(Array.from(x.dataSync()));
    const far = translateImages(x, 9, new Rng(1));
    // every image is either empty or a shifted copy; a shift of 3+ on an axis empties it
    const rng = new Rng(1);
    const f = far.dataSync();
    for (let i = 0; i < 4; i++) {
      const dy = rng.int(19) - 9;
      const dx = rng.int(19) - 9;
      const img = Array.from(f.subarray(i * 9, (i + 1) * 9));
      if (Math.abs(dy) >= 3 || Math.abs(dx) >= 3) expect(img.every((v) => v === 0)).toBe(true);
    }
    tf.dispose([x, a, b, same, far]);
  });

  it('rejects bad shifts and non-image tensors with a DataError', () => {
    const x = ramp(2, 3, 3, 1);
    expect(() => translateImages(x, -1, new Rng(1))).toThrow(DataError);
    expect(() => translateImages(x, 1.5, new Rng(1))).toThrow(/whole number of pixels/);
    const flat = tf.zeros([2, 9]);
    expect(() => translateImages(flat, 1, new Rng(1))).toThrow(/images \[n, height, width, channels\].*\[2,9\]/);
    tf.dispose([x, flat]);
  });
});

describe('augmentEpisode', () => {
  const episode = (): Episode => {
    const sx = ramp(3, 4, 4, 1);
    const qx = ramp(6, 4, 4, 1);
    return { ways: 3, shots: 1, support: { x: sx, y: [0, 1, 2] }, query: { x: qx, y: [0, 0, 1, 1, 2, 2] }, dispose: () => tf.dispose([sx, qx]) };
  };

  it('translates support then query images from one generator, keeps labels, owns its tensors', () => {
    const before = tf.memory().numTensors;
    const e = episode();
    const sRef = translateImages(e.support.x, 1, new Rng('e'));
    const rng = new Rng('e');
    translateImages(e.support.x, 1, rng).dispose(); // advance past the support draws
    const qRef = translateImages(e.query.x, 1, rng);
    const a = augmentEpisode(e, { translate: 1 }, new Rng('e'));
    expect(Array.from(a.support.x.dataSync())).toEqual(Array.from(sRef.dataSync()));
    expect(Array.from(a.query.x.dataSync())).toEqual(Array.from(qRef.dataSync()));
    expect(a.support.y).toEqual([0, 1, 2]);
    expect(a.query.y).toEqual([0, 0, 1, 1, 2, 2]);
    tf.dispose([sRef, qRef]);
    a.dispose!();
    // the input episode was disposed by augmentEpisode, the result by its own dispose
    expect(tf.memory().numTensors).toBe(before);
  });

  it('translate 0 returns the episode itself; a bad option is a DataError', () => {
    const e = episode();
    expect(augmentEpisode(e, {}, new Rng(1))).toBe(e);
    expect(augmentEpisode(e, { translate: 0 }, new Rng(1))).toBe(e);
    expect(() => augmentEpisode(e, { translate: -2 }, new Rng(1))).toThrow(DataError);
    e.dispose!();
  });
});
