/**
 * Pooling gradients written with differentiable ops (reshape, pad/slice, tile, equal-masks, mul),
 * so that second-order gradients pass through pooling layers (tfjs' own MaxPool/AvgPool gradients
 * call the MaxPoolGrad/AvgPoolGrad kernels, which have no gradient themselves).
 */
import * as tf from '@tensorflow/tfjs-core';
import { dilateHW, padOrCrop, pair } from './util.js';

export interface PoolGeometry {
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  padTop: number;
  padLeft: number;
}

export function poolGeometry(
  xShape: readonly number[],
  filterSize: number | readonly number[],
  strides: number | readonly number[],
  pad: 'valid' | 'same' | number | unknown,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
): PoolGeometry {
  const info = tf.backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    pair(filterSize as number[]),
    pair(strides as number[]),
    1,
    pad as 'valid',
    dimRoundingMode,
  );
  return {
    inH: info.inHeight,
    inW: info.inWidth,
    outH: info.outHeight,
    outW: info.outWidth,
    kh: info.filterHeight,
    kw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** Amounts that pad/crop x [N,H,W,C] to the padded frame covering every window. */
function frame(g: PoolGeometry): [[number, number], [number, number], [number, number], [number, number]] {
  const needH = (g.outH - 1) * g.sh + g.kh;
  const needW = (g.outW - 1) * g.sw + g.kw;
  return [
    [0, 0],
    [g.padTop, needH - g.inH - g.padTop],
    [g.padLeft, needW - g.inW - g.padLeft],
    [0, 0],
  ];
}

/** Window tap (i, j) of the padded input: xpad[:, i + sh*a, j + sw*b, :] for a < outH, b < outW. */
function tap(xpad: tf.Tensor4D, i: number, j: number, g: PoolGeometry): tf.Tensor4D {
  const [n, hp, wp, c] = xpad.shape;
  const lenH = g.outH * g.sh;
  const lenW = g.outW * g.sw;
  // take rows i .. i+lenH (pad at the end if the frame is shorter), then keep every sh-th
  let v = padOrCrop(xpad, [
    [0, 0],
    [-i, i + lenH - hp],
    [-j, j + lenW - wp],
    [0, 0],
  ]) as tf.Tensor4D;
  if (g.sh === 1 && g.sw === 1) return v;
  v = tf.reshape(tf.slice(tf.reshape(v, [n, g.outH, g.sh, g.outW, g.sw, c]), [0, 0, 0, 0, 0, 0], [n, g.outH, 1, g.outW, 1, c]), [
    n,
    g.outH,
    g.outW,
    c,
  ]);
  return v;
}

/** Put a window-tap gradient [N,outH,outW,C] back at tap (i, j) of an input-shaped tensor. */
function untap(t: tf.Tensor4D, i: number, j: number, g: PoolGeometry): tf.Tensor4D {
  const d = dilateHW(t, g.sh, g.sw); // [N, outH*sh, outW*sw, C]
  const top = i - g.padTop;
  const left = j - g.padLeft;
  return padOrCrop(d, [
    [0, 0],
    [top, g.inH - top - g.outH * g.sh],
    [left, g.inW - left - g.outW * g.sw],
    [0, 0],
  ]) as tf.Tensor4D;
}

/**
 * Gradient of max-pooling given input x, output y and dy. The gradient goes to the window
 * positions equal to the max (split evenly between exact ties: a valid subgradient).
 */
export function maxPoolGrad(dy: tf.Tensor4D, x: tf.Tensor4D, y: tf.Tensor4D, g: PoolGeometry): tf.Tensor4D {
  const [n, , , c] = x.shape;
  const xpad = padOrCrop(x, frame(g), -Infinity) as tf.Tensor4D;
  if (g.kh === g.sh && g.kw === g.sw) {
    // non-overlapping windows: compare x with the max upsampled to x's frame (same-shape ops only;
    // wasm's broadcasting of high-rank tensors is very slow)
    const fh = g.outH * g.kh;
    const fw = g.outW * g.kw;
    const xf = padOrCrop(xpad, [
      [0, 0],
      [0, fh - xpad.shape[1]],
      [0, fw - xpad.shape[2]],
      [0, 0],
    ]) as tf.Tensor4D;
    const mask = tf.cast(tf.equal(xf, upsample(y, g.kh, g.kw)), 'float32') as tf.Tensor4D;
    // exact ties share the gradient
    const cnt = tf.mul(tf.avgPool(mask, [g.kh, g.kw], [g.kh, g.kw], 'valid'), g.kh * g.kw);
    const dxf = tf.mul(mask, upsample(tf.div(dy, cnt) as tf.Tensor4D, g.kh, g.kw)) as tf.Tensor4D;
    return padOrCrop(dxf, [
      [0, 0],
      [-g.padTop, g.inH + g.padTop - fh],
      [-g.padLeft, g.inW + g.padLeft - fw],
      [0, 0],
    ]) as tf.Tensor4D;
  }
  void n;
  void c;
  const masks: tf.Tensor[] = [];
  for (let i = 0; i < g.kh; i++) {
    for (let j = 0; j < g.kw; j++) masks.push(tf.cast(tf.equal(tap(xpad, i, j, g), y), 'float32'));
  }
  const cnt = masks.length === 1 ? masks[0]! : tf.addN(masks);
  const dyn = tf.div(dy, cnt);
  const parts: tf.Tensor[] = [];
  let m = 0;
  for (let i = 0; i < g.kh; i++) {
    for (let j = 0; j < g.kw; j++) parts.push(untap(tf.mul(masks[m++]!, dyn) as tf.Tensor4D, i, j, g));
  }
  return (parts.length === 1 ? parts[0]! : tf.addN(parts)) as tf.Tensor4D;
}

/** Nearest-neighbour upsampling by integer factors (differentiable: its registered gradient is a sum-pool). */
export function upsample(t: tf.Tensor4D, fh: number, fw: number): tf.Tensor4D {
  if (fh === 1 && fw === 1) return t;
  return tf.image.resizeNearestNeighbor(t, [t.shape[1] * fh, t.shape[2] * fw]);
}

/** Per-output-position divisor of average pooling (in-bounds elements only, as tfjs does). */
function avgDivisor(g: PoolGeometry): tf.Tensor4D {
  const vals = new Float32Array(g.outH * g.outW);
  for (let a = 0; a < g.outH; a++) {
    const r0 = a * g.sh - g.padTop;
    const rows = Math.min(g.inH, r0 + g.kh) - Math.max(0, r0);
    for (let b = 0; b < g.outW; b++) {
      const c0 = b * g.sw - g.padLeft;
      const cols = Math.min(g.inW, c0 + g.kw) - Math.max(0, c0);
      vals[a * g.outW + b] = Math.max(1, rows * cols);
    }
  }
  return tf.tensor4d(vals, [1, g.outH, g.outW, 1]);
}

export function avgPoolGrad(dy: tf.Tensor4D, g: PoolGeometry): tf.Tensor4D {
  const [n, , , c] = dy.shape;
  const dyn = tf.div(dy, avgDivisor(g)) as tf.Tensor4D;
  if (g.kh === g.sh && g.kw === g.sw) {
    const dxpad = upsample(dyn, g.kh, g.kw);
    return padOrCrop(dxpad, [
      [0, 0],
      [-g.padTop, g.inH + g.padTop - g.outH * g.kh],
      [-g.padLeft, g.inW + g.padLeft - g.outW * g.kw],
      [0, 0],
    ]) as tf.Tensor4D;
  }
  void n;
  void c;
  const parts: tf.Tensor[] = [];
  for (let i = 0; i < g.kh; i++) for (let j = 0; j < g.kw; j++) parts.push(untap(dyn, i, j, g));
  return (parts.length === 1 ? parts[0]! : tf.addN(parts)) as tf.Tensor4D;
}
