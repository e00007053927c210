import jpeg from 'jpeg-js';
import { DataError, briefCause } from './errors.js';
import { decodePng, isPng, type DecodedImage } from './png.js';

export type { DecodedImage } from './png.js';
export { decodePng } from './png.js';

function isJpeg(buf: Uint8Array): boolean {
  return buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
}

/**
 * Decode a PNG (own fast path, pngjs fallback) or JPEG (jpeg-js) held in memory. `file` is only
 * used in the error message: a corrupt or unsupported file gives a DataError naming it.
 */
export function decodeImage(buf: Uint8Array, file: string): DecodedImage {
  if (isPng(buf)) {
    try {
      return decodePng(buf);
    } catch (e) {
      throw new DataError(`corrupt PNG ${file}: ${briefCause(e)} (expected a valid PNG image)`, { file, expected: 'a valid PNG image', cause: e });
    }
  }
  if (isJpeg(buf)) {
    try {
      const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 });
      return { width: img.width, height: img.height, channels: 3, data: img.data };
    } catch (e) {
      throw new DataError(`corrupt JPEG ${file}: ${briefCause(e)} (expected a valid JPEG image)`, { file, expected: 'a valid JPEG image', cause: e });
    }
  }
  const what = buf.length === 0 ? 'empty file' : 'unknown file signature';
  throw new DataError(`cannot decode image ${file}: ${what} (expected a PNG or JPEG image)`, { file, expected: 'a PNG or JPEG image' });
}

/**
 * Convert a decoded image to float HWC with `channels` (1 = luma, 3 = RGB) in [0, 1]. Alpha is
 * composited over white. `invert` maps v -> 1 - v (Omniglot: black ink becomes 1).
 */
export function toFloat(img: DecodedImage, channels: 1 | 3, invert = false): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(n * channels);
  const src = img.data;
  const c = img.channels;
  const k = 1 / 255;
  if (c === 1 && channels === 1) {
    if (invert) for (let i = 0; i < n; i++) out[i] = 1 - src[i]! * k;
    else for (let i = 0; i < n; i++) out[i] = src[i]! * k;
    return out;
  }
  for (let i = 0; i < n; i++) {
    let r: number, g: number, b: number, a = 255;
    if (c === 1 || c === 2) {
      r = g = b = src[i * c]!;
      if (c === 2) a = src[i * c + 1]!;
    } else {
      r = src[i * c]!;
      g = src[i * c + 1]!;
      b = src[i * c + 2]!;
      if (c === 4) a = src[i * c + 3]!;
    }
    if (a !== 255) {
      const af = a * k;
      r = r * af + 255 * (1 - af);
      g = g * af + 255 * (1 - af);
      b = b * af + 255 * (1 - af);
    }
    if (channels === 1) {
      const v = c <= 2 ? r * k : (0.299 * r + 0.587 * g + 0.114 * b) * k;
      out[i] = invert ? 1 - v : v;
    } else {
      out[3 * i] = invert ? 1 - r * k : r * k;
      out[3 * i + 1] = invert ? 1 - g * k : g * k;
      out[3 * i + 2] = invert ? 1 - b * k : b * k;
    }
  }
  return out;
}

export type ResizeMethod = 'auto' | 'area' | 'bilinear';

/** Sparse 1-D resampling weights: for each output index, the source indices and weights. */
interface Weights {
  start: Int32Array;
  count: Int32Array;
  idx: Int32Array;
  w: Float32Array;
}

const weightCache = new Map<string, Weights>();

function areaWeights(inSize: number, outSize: number): Weights {
  // output pixel o covers source interval [o*s, (o+1)*s); weight = overlap / s
  const s = inSize / outSize;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const idx: number[] = [];
  const w: number[] = [];
  for (let o = 0; o < outSize; o++) {
    const a = o * s;
    const b = (o + 1) * s;
    start[o] = idx.length;
    for (let i = Math.floor(a); i < Math.min(inSize, Math.ceil(b)); i++) {
      const ov = Math.min(b, i + 1) - Math.max(a, i);
      if (ov > 1e-9) {
        idx.push(i);
        w.push(ov / s);
      }
    }
    count[o] = idx.length - start[o]!;
  }
  return { start, count, idx: Int32Array.from(idx), w: Float32Array.from(w) };
}

function bilinearWeights(inSize: number, outSize: number): Weights {
  // half-pixel centres (align_corners = false), clamped at the borders
  const s = inSize / outSize;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const idx: number[] = [];
  const w: number[] = [];
  for (let o = 0; o < outSize; o++) {
    const x = Math.min(Math.max((o + 0.5) * s - 0.5, 0), inSize - 1);
    const i0 = Math.floor(x);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const f = x - i0;
    start[o] = idx.length;
    idx.push(i0);
    w.push(1 - f);
    if (i1 !== i0 && f > 0) {
      idx.push(i1);
      w.push(f);
    }
    count[o] = idx.length - start[o]!;
  }
  return { start, count, idx: Int32Array.from(idx), w: Float32Array.from(w) };
}

function weightsFor(inSize: number, outSize: number, method: ResizeMethod): Weights {
  const m = method === 'auto' ? (outSize < inSize ? 'area' : 'bilinear') : method;
  const key = `${m}:${inSize}:${outSize}`;
  let wt = weightCache.get(key);
  if (!wt) {
    wt = m === 'area' ? areaWeights(inSize, outSize) : bilinearWeights(inSize, outSize);
    weightCache.set(key, wt);
  }
  return wt;
}

/**
 * Separable resize of a float HWC image. 'area' averages every source pixel by its overlap with
 * the output pixel (exact box filter, the right thing for downscaling); 'bilinear' interpolates
 * with half-pixel centres; 'auto' picks area when shrinking an axis and bilinear when enlarging.
 */
export function resizeImage(
  src: Float32Array,
  height: number,
  width: number,
  channels: number,
  outH: number,
  outW: number,
  method: ResizeMethod = 'auto',
): Float32Array {
  if (src.length !== height * width * channels) {
    throw new RangeError(`resizeImage: src has ${src.length} values, expected ${height}x${width}x${channels}`);
  }
  if (height === outH && width === outW) return src.slice();
  const wx = weightsFor(width, outW, method);
  const wy = weightsFor(height, outH, method);
  // horizontal pass: [height, outW, C]
  const tmp = new Float32Array(height * outW * channels);
  if (channels === 1) {
    for (let y = 0; y < height; y++) {
      const row = y * width;
      const trow = y * outW;
      for (let o = 0; o < outW; o++) {
        const s = wx.start[o]!;
        const e = s + wx.count[o]!;
        let acc = 0;
        for (let k = s; k < e; k++) acc += src[row + wx.idx[k]!]! * wx.w[k]!;
        tmp[trow + o] = acc;
      }
    }
  } else for (let y = 0; y < height; y++) {
    const row = y * width * channels;
    const trow = y * outW * channels;
    for (let o = 0; o < outW; o++) {
      const s = wx.start[o]!;
      const e = s + wx.count[o]!;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = s; k < e; k++) acc += src[row + wx.idx[k]! * channels + c]! * wx.w[k]!;
        tmp[trow + o * channels + c] = acc;
      }
    }
  }
  // vertical pass
  const out = new Float32Array(outH * outW * channels);
  const rowLen = outW * channels;
  for (let o = 0; o < outH; o++) {
    const s = wy.start[o]!;
    const e = s + wy.count[o]!;
    const orow = o * rowLen;
    for (let k = s; k < e; k++) {
      const wk = wy.w[k]!;
      const irow = wy.idx[k]! * rowLen;
      for (let j = 0; j < rowLen; j++) out[orow + j] += tmp[irow + j]! * wk;
    }
  }
  return out;
}

/** Decode, convert and resize in one go: float HWC [outH, outW, channels] in [0, 1]. */
export function loadImageFloat(
  buf: Uint8Array,
  file: string,
  opts: { height: number; width: number; channels: 1 | 3; invert?: boolean; method?: ResizeMethod },
): Float32Array {
  const img = decodeImage(buf, file);
  const f = toFloat(img, opts.channels, opts.invert ?? false);
  return resizeImage(f, img.height, img.width, opts.channels, opts.height, opts.width, opts.method ?? 'auto');
}
