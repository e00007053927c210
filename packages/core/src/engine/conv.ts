/**
 * Convolution gradients written with forward convolutions only (plus reshape / pad / slice /
 * reverse / transpose), so that
 *  - they run on backends that lack the Conv2DBackprop* kernels (wasm has no Conv2DBackpropFilter);
 *  - they can be differentiated again: the gradient of a conv2d is made of conv2d's, whose gradient
 *    is this same rule (second-order MAML, iMAML Hessian-vector products, ...).
 *
 * Layout NHWC, filter [kh, kw, inC, outC]. Let s = stride, d = dilation (tfjs requires one of them
 * to be 1), pt = top padding, k_eff = (k-1)*d + 1.
 *   y[o] = sum_k xpad[o*s + k*d] w[k]
 *   dx   = conv(stride-dilate(dy, s) padded by k_eff-1-pt, reverse(w) with in/out swapped; dilation d)
 *   dW   = conv(x^T (channels as batch, batch as channels) padded by pt, dy^T as filter;
 *              stride d, dilation s)
 */
import * as tf from '@tensorflow/tfjs-core';
import { dilateHW, padOrCrop, pair } from './util.js';

export type ConvPad = 'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];

export interface ConvGeometry {
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  padTop: number;
  padLeft: number;
}

export function convGeometry(
  xShape: readonly number[],
  filterShape: readonly number[],
  strides: number | readonly number[],
  dilations: number | readonly number[],
  pad: ConvPad,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
  dataFormat = 'NHWC',
): ConvGeometry {
  if (dataFormat !== 'NHWC') {
    throw new Error(`engine/conv.ts: only NHWC convolutions have registered gradients (got dataFormat '${dataFormat}')`);
  }
  const [sh, sw] = pair(strides as number | number[]);
  const [dh, dw] = pair(dilations as number | number[]);
  if ((sh > 1 || sw > 1) && (dh > 1 || dw > 1)) {
    throw new Error(`engine/conv.ts: strides [${sh},${sw}] and dilations [${dh},${dw}] cannot both exceed 1`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    [sh, sw],
    [dh, dw],
    pad as 'same',
    dimRoundingMode,
    false,
    'channelsLast',
  );
  return {
    inH: info.inHeight,
    inW: info.inWidth,
    outH: info.outHeight,
    outW: info.outWidth,
    kh: info.filterHeight,
    kw: info.filterWidth,
    sh,
    sw,
    dh,
    dw,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** conv2d 'valid' after padding (>= 0) or cropping (< 0) by `amounts` = [[top,bottom],[left,right]]. */
function convWithPads(
  x: tf.Tensor4D,
  f: tf.Tensor4D,
  amounts: [[number, number], [number, number]],
  strides: [number, number],
  dilations: [number, number],
): tf.Tensor4D {
  const [[t, b], [l, r]] = amounts;
  if (t >= 0 && b >= 0 && l >= 0 && r >= 0) {
    const pad: ConvPad = t === 0 && b === 0 && l === 0 && r === 0 ? 'valid' : [[0, 0], [t, b], [l, r], [0, 0]];
    return tf.conv2d(x, f, strides, pad as 'valid', 'NHWC', dilations);
  }
  const xp = padOrCrop(x, [[0, 0], [t, b], [l, r], [0, 0]]) as tf.Tensor4D;
  return tf.conv2d(xp, f, strides, 'valid', 'NHWC', dilations);
}

/**
 * reverse(filter, [0, 1]) as an anti-diagonal permutation matmul over the kh*kw taps: wasm's Reverse
 * kernel takes ~7 ms on a 3x3x64x64 filter, the matmul well under 1 ms (exact: one product by 1 per
 * element). Differentiable to any order.
 */
function flipTaps(filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, ci, co] = filter.shape;
  const k = kh * kw;
  if (k === 1) return filter;
  const p = new Float32Array(k * k);
  for (let i = 0; i < k; i++) p[i * k + (k - 1 - i)] = 1;
  const flipped = tf.matMul(tf.tensor2d(p, [k, k]), tf.reshape(filter, [k, ci * co]) as tf.Tensor2D);
  return tf.reshape(flipped, [kh, kw, ci, co]) as tf.Tensor4D;
}

/**
 * dx of a stride-1, dilation-1 conv whose filter is larger than its output (kh*kw > outH*outW: the
 * filter-gradient convolutions of second-order graphs, e.g. a 14x14 "filter" giving a 3x3 output).
 * The usual form would run a kh x kw kernel over a heavily padded dy (measured ~4 s per call on wasm for
 * Conv-4's [64,3,3,64] * [14,14,64,5]); here the roles swap: the filter is the image (in-channels as
 * batch), the spatially flipped dy the kernel:
 *   dx[n,h,w,ci] = sum_{a,b,co} dy[n,a,b,co] f[h+pt-a, w+pl-b, ci, co]
 *                = conv(f^T [ci,kh,kw,co] padded by outH-1-pt / outW-1-pl, flip(dy)^T [oh,ow,co,n])[ci,h,w,n].
 */
function conv2dInputGradSwapped(dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: readonly number[], g: ConvGeometry): tf.Tensor4D {
  const [n, oh, ow, co] = dy.shape;
  const img = tf.transpose(filter, [2, 0, 1, 3]) as tf.Tensor4D; // [ci, kh, kw, co]
  let dyt = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [oh, ow, n, co]
  if (oh * ow > 1) {
    const k = oh * ow;
    const p = new Float32Array(k * k);
    for (let i = 0; i < k; i++) p[i * k + (k - 1 - i)] = 1;
    dyt = tf.reshape(tf.matMul(tf.tensor2d(p, [k, k]), tf.reshape(dyt, [k, n * co]) as tf.Tensor2D), [oh, ow, n, co]) as tf.Tensor4D;
  }
  const ker = tf.transpose(dyt, [0, 1, 3, 2]) as tf.Tensor4D; // [oh, ow, co, n]
  const top = oh - 1 - g.padTop;
  const left = ow - 1 - g.padLeft;
  const bottom = g.inH - g.kh - top + oh - 1;
  const right = g.inW - g.kw - left + ow - 1;
  const out = convWithPads(img, ker, [[top, bottom], [left, right]], [1, 1], [1, 1]); // [ci, inH, inW, n]
  const dx = tf.transpose(out, [3, 1, 2, 0]) as tf.Tensor4D;
  if (dx.shape[1] !== xShape[1] || dx.shape[2] !== xShape[2]) {
    throw new Error(`engine/conv.ts conv2dInputGradSwapped: got [${dx.shape}] for input [${xShape}] (internal error)`);
  }
  return dx;
}

/** Gradient of conv2d with respect to its input, made of one forward convolution. */
export function conv2dInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: readonly number[], g: ConvGeometry): tf.Tensor4D {
  if (g.sh === 1 && g.sw === 1 && g.dh === 1 && g.dw === 1 && g.kh * g.kw > g.outH * g.outW) {
    return conv2dInputGradSwapped(dy, filter, xShape, g);
  }
  const ekh = (g.kh - 1) * g.dh + 1;
  const ekw = (g.kw - 1) * g.dw + 1;
  // [kh, kw, inC, outC] -> flipped spatially, [kh, kw, outC, inC]
  const wT = tf.transpose(flipTaps(filter), [0, 1, 3, 2]) as tf.Tensor4D;
  const dyd = dilateHW(dy, g.sh, g.sw); // length outH*sh (trailing sh-1 zeros)
  const top = ekh - 1 - g.padTop;
  const left = ekw - 1 - g.padLeft;
  const bottom = g.inH + ekh - 1 - top - g.outH * g.sh;
  const right = g.inW + ekw - 1 - left - g.outW * g.sw;
  const dx = convWithPads(dyd, wT, [[top, bottom], [left, right]], [1, 1], [g.dh, g.dw]);
  if (dx.shape[1] !== xShape[1] || dx.shape[2] !== xShape[2]) {
    throw new Error(`engine/conv.ts conv2dInputGrad: got [${dx.shape}] for input [${xShape}] (internal error)`);
  }
  return dx;
}

/**
 * Gradient of conv2d with respect to its filter. Small kernels (<= 3x3) on few input channels (< 16):
 * one [kh*kw*inC, M] x [M, outC] matmul over the stacked shifted views of the channels-first input;
 * otherwise one forward convolution (input channels as batch, dy as the filter).
 */
export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: readonly number[], g: ConvGeometry): tf.Tensor4D {
  // measured on wasm (Conv-4 shapes): the per-tap matmuls win for few input channels, the
  // single convolution for many
  if (g.kh * g.kw > 9 || x.shape[3] >= 16) return conv2dFilterGradConv(x, dy, filterShape, g);
  const [n, , , cin] = x.shape;
  const cout = dy.shape[3];
  const m = n * g.outH * g.outW;
  const needH = (g.kh - 1) * g.dh + (g.outH - 1) * g.sh + 1;
  const needW = (g.kw - 1) * g.dw + (g.outW - 1) * g.sw + 1;
  const xt = padOrCrop(tf.transpose(x, [3, 0, 1, 2]), [
    [0, 0],
    [0, 0],
    [g.padTop, needH - g.inH - g.padTop],
    [g.padLeft, needW - g.inW - g.padLeft],
  ]); // [inC, N, needH, needW]
  const dy2 = tf.reshape(dy, [m, cout]) as tf.Tensor2D;
  const taps: tf.Tensor[] = [];
  for (let i = 0; i < g.kh; i++) {
    for (let j = 0; j < g.kw; j++) {
      const r0 = i * g.dh;
      const c0 = j * g.dw;
      const view =
        g.sh === 1 && g.sw === 1
          ? tf.slice(xt, [0, 0, r0, c0], [cin, n, g.outH, g.outW])
          : tf.stridedSlice(xt, [0, 0, r0, c0], [cin, n, r0 + (g.outH - 1) * g.sh + 1, c0 + (g.outW - 1) * g.sw + 1], [1, 1, g.sh, g.sw]);
      taps.push(tf.reshape(view, [cin, m]));
    }
  }
  // one [kh*kw*inC, M] x [M, outC] matmul over the stacked tap views (im2col of the transposed input):
  // measured on wasm, 75x28x28x1 -> 64: ~95-140 ms vs ~170-240 ms for one matmul per tap (XNNPACK
  // runs a 1-row GEMM poorly) and ~130-250 ms for the single-convolution form
  const cols = (taps.length === 1 ? taps[0]! : tf.concat(taps, 0)) as tf.Tensor2D;
  const dw = tf.reshape(tf.matMul(cols, dy2), [g.kh, g.kw, cin, cout]) as tf.Tensor4D;
  if (!tf.util.arraysEqual(dw.shape, filterShape as number[])) {
    throw new Error(`engine/conv.ts conv2dFilterGrad: got [${dw.shape}] for filter [${filterShape}] (internal error)`);
  }
  return dw;
}

/** Gradient of conv2d with respect to its filter, made of one forward convolution. */
export function conv2dFilterGradConv(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: readonly number[], g: ConvGeometry): tf.Tensor4D {
  const xt = tf.transpose(x, [3, 1, 2, 0]) as tf.Tensor4D; // [inC, H, W, N]
  const dyt = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [outH, outW, N, outC]
  const needH = (g.kh - 1) * g.dh + (g.outH - 1) * g.sh + 1;
  const needW = (g.kw - 1) * g.dw + (g.outW - 1) * g.sw + 1;
  const bottom = needH - g.inH - g.padTop;
  const right = needW - g.inW - g.padLeft;
  const out = convWithPads(xt, dyt, [[g.padTop, bottom], [g.padLeft, right]], [g.dh, g.dw], [g.sh, g.sw]);
  // out: [inC, kh, kw, outC]
  const dw = tf.transpose(out, [1, 2, 0, 3]) as tf.Tensor4D;
  if (!tf.util.arraysEqual(dw.shape, filterShape as number[])) {
    throw new Error(`engine/conv.ts conv2dFilterGrad: got [${dw.shape}] for filter [${filterShape}] (internal error)`);
  }
  return dw;
}
