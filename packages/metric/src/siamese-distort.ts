import type { Rng } from '@metalearn/core';

/** Ranges of Koch et al.'s (2015, §4.1) random affine distortions; each component is used with probability `p`. */
export interface AffineDistortionRanges {
  /** rotation in degrees, uniform in [−rotation, rotation] (Koch: 10) */
  rotation: number;
  /** shear, uniform in [−shear, shear] per axis (Koch: 0.3) */
  shear: number;
  /** scale, uniform in [1 − scale, 1 + scale] per axis (Koch: 0.2, i.e. [0.8, 1.2]) */
  scale: number;
  /** translation in pixels, uniform in [−translation, translation] per axis (Koch: 2) */
  translation: number;
  /** probability of including each component (Koch: 0.5) */
  p: number;
}

export const KOCH_DISTORTION: AffineDistortionRanges = { rotation: 10, shear: 0.3, scale: 0.2, translation: 2, p: 0.5 };

/**
 * A random affine distortion of one image [h, w, c] (row-major, channels last), as Koch et al.
 * augment their verification pairs: T = rotation · shear · scale, plus a translation, about the
 * image centre; bilinear sampling of the inverse map, zero outside the image. Draws only from `rng`.
 */
export function affineDistort(img: ArrayLike<number>, h: number, w: number, c: number, rng: Rng, r: AffineDistortionRanges = KOCH_DISTORTION, out: Float32Array<ArrayBufferLike> = new Float32Array(h * w * c)): Float32Array<ArrayBufferLike> {
  if (img.length !== h * w * c) throw new Error(`affineDistort: image has ${img.length} values, expected ${h}×${w}×${c} = ${h * w * c}`);
  const use = () => rng.next() < r.p;
  const theta = use() ? (rng.uniform(-r.rotation, r.rotation) * Math.PI) / 180 : 0;
  const shx = use() ? rng.uniform(-r.shear, r.shear) : 0;
  const shy = use() ? rng.uniform(-r.shear, r.shear) : 0;
  const sx = use() ? rng.uniform(1 - r.scale, 1 + r.scale) : 1;
  const sy = use() ? rng.uniform(1 - r.scale, 1 + r.scale) : 1;
  const tx = use() ? rng.uniform(-r.translation, r.translation) : 0;
  const ty = use() ? rng.uniform(-r.translation, r.translation) : 0;
  // forward map on (x, y) centred coordinates: A = R(θ) · [[1, shx], [shy, 1]] · diag(sx, sy)
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const m00 = cos * sx - sin * shy * sx;
  const m01 = cos * shx * sy - sin * sy;
  const m10 = sin * sx + cos * shy * sx;
  const m11 = sin * shx * sy + cos * sy;
  const det = m00 * m11 - m01 * m10;
  if (Math.abs(det) < 1e-6) {
    out.set(Array.from(img));
    return out;
  }
  const i00 = m11 / det;
  const i01 = -m01 / det;
  const i10 = -m10 / det;
  const i11 = m00 / det;
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  out.fill(0);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = x - cx - tx;
      const dy = y - cy - ty;
      const u = i00 * dx + i01 * dy + cx;
      const v = i10 * dx + i11 * dy + cy;
      const x0 = Math.floor(u);
      const y0 = Math.floor(v);
      const fx = u - x0;
      const fy = v - y0;
      for (let k = 0; k < c; k++) {
        let acc = 0;
        for (let j = 0; j < 2; j++) {
          const yy = y0 + j;
          if (yy < 0 || yy >= h) continue;
          const wy = j === 0 ? 1 - fy : fy;
          for (let i = 0; i < 2; i++) {
            const xx = x0 + i;
            if (xx < 0 || xx >= w) continue;
            const wx = i === 0 ? 1 - fx : fx;
            acc += wx * wy * img[(yy * w + xx) * c + k]!;
          }
        }
        out[(y * w + x) * c + k] = acc;
      }
    }
  }
  return out;
}
