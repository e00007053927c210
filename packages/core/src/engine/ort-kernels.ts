/**
 * onnxruntime-backed Conv2D, BatchMatMul and Equal for the wasm backend.
 *
 * Every convolution of the engine — the forward pass and, since `conv.ts` writes the gradients with
 * forward convolutions, dx, dW and every higher-order term — goes through tfjs' `Conv2D` kernel, and
 * the im2col filter gradients and dense layers through `BatchMatMul`. On wasm these are XNNPACK with
 * 128-bit SIMD, and XNNPACK repacks a matmul's right operand whenever it is a fresh tensor (every
 * gradient): a [9, 58800] x [58800, 64] product takes 25–80 ms there, ~3 ms in onnxruntime.
 * onnxruntime's CPU kernels (MLAS, native AVX2 / AVX-512) run Conv-4's 64-channel convolutions about
 * 2x faster than XNNPACK (see README.md for the workload figures). This module replaces the two wasm
 * kernels with ones that
 *
 *  - builds, once per geometry, a small ONNX graph (Conv: NHWC→NCHW transpose, Conv, NCHW→NHWC;
 *    MatMul: optional transposes, MatMul) and opens a *synchronous* onnxruntime-node session on it (the native binding's `run` is synchronous;
 *    the public `InferenceSession.run` only wraps it in a Promise, which a tfjs kernel cannot await);
 *  - feeds the input and filter as views of the wasm heap (no copy) and lets onnxruntime write the
 *    result straight into the output tensor's heap memory (a pre-allocated output);
 *  - runs a convolution whose filter is larger than its output (the filter-gradient convolutions, dy
 *    as a 14x14 "filter" giving a 3x3 output) as im2col over the few output positions + one MatMul;
 *  - falls back to the wasm kernel where the case is not covered: such big-filter convolutions with
 *    strides or dilations, matmuls under 2^20 multiply-adds (call overhead), non-float32, NCHW, rank > 3.
 *
 * The choice depends on shapes only, never on timings, so a run is reproducible: same seed, same
 * kernels, same floats. Each output element's sum is computed by one thread (MLAS splits the output,
 * not the reduction), so the thread count does not change results either (tested).
 *
 * Switch: `METALEARN_ORT_KERNELS=0` (or `installOrtKernels(false)`) restores the wasm kernel;
 * `METALEARN_ORT_THREADS=N` sets onnxruntime's threads per call (default 1: on 2 cores, two threads per
 * Conv-4 convolution measured slower than one — the calls are too short to amortise the hand-off; the
 * second core is reached by worker threads running tasks, `core/parallel`).
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { OnnxGraphBuilder } from '../onnx/builder.js';

const require = createRequire(import.meta.url);

export interface OrtTensorCtor {
  new (type: 'float32' | 'bool', data: Float32Array | Uint8Array, dims: readonly number[]): unknown;
}
export interface SyncSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: Record<string, unknown>): void;
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, options: Record<string, unknown>): Record<string, unknown>;
  dispose(): void;
}
export interface OrtBinding {
  binding: { InferenceSession: new () => SyncSession };
  initOrt(): void;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Uint8Array;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

let ort: { Tensor: OrtTensorCtor; binding: OrtBinding } | null | undefined;

/** onnxruntime-node's tensor class and native binding, or null when they cannot be loaded. */
export function loadOrtSync(): { Tensor: OrtTensorCtor; binding: OrtBinding } | null {
  if (ort !== undefined) return ort;
  try {
    const mod = require('onnxruntime-node') as { Tensor: OrtTensorCtor };
    const binding = require('onnxruntime-node/dist/binding') as OrtBinding;
    binding.initOrt();
    ort = { Tensor: mod.Tensor, binding };
  } catch {
    ort = null;
  }
  return ort;
}

/** A positive integer from environment variable `name`, or undefined when it is unset or empty (bad values throw, naming it). */
export function envPositiveInt(name: string): number | undefined {
  const env = process.env[name];
  if (env === undefined || env === '') return undefined;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`env ${name}: expected a positive integer, got '${env}'`);
  return n;
}

/** Threads per onnxruntime kernel call: METALEARN_ORT_THREADS, else 1 (measured faster than 2 on Conv-4's shapes). */
export function ortKernelThreads(): number {
  return envPositiveInt('METALEARN_ORT_THREADS') ?? 1;
}

/** Sessions by geometry, least recently used first (a run meets a few dozen geometries). */
const sessions = new Map<string, SyncSession>();
const MAX_SESSIONS = 256;
const originals: Partial<Record<OrtKernelName, tf.KernelConfig>> = {};
let installed = false;
let threads = 1;
type OrtKernelName = 'Conv2D' | 'BatchMatMul' | 'Equal';
/** calls per kernel: run in onnxruntime / left to the wasm kernel */
const counts: Record<string, { ort: number; wasm: number }> = {};

interface ConvPlan {
  key: string;
  /** 'conv': ONNX Conv; 'im2col': one MatMul over the oh·ow windows (filters larger than the output) */
  form: 'conv' | 'im2col';
  outShape: [number, number, number, number];
  pads: [number, number, number, number];
  strides: [number, number];
  dilations: [number, number];
}

/** The geometry of a Conv2D call, or null when it stays on the wasm kernel. */
export function ortConvPlan(xShape: readonly number[], fShape: readonly number[], attrs: Record<string, unknown>): ConvPlan | null {
  const dataFormat = (attrs['dataFormat'] as string | undefined) ?? 'NHWC';
  if (dataFormat !== 'NHWC' || xShape.length !== 4 || fShape.length !== 4) return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    fShape as [number, number, number, number],
    attrs['strides'] as [number, number],
    attrs['dilations'] as [number, number],
    attrs['pad'] as 'same',
    attrs['dimRoundingMode'] as 'floor' | undefined,
    false,
    'channelsLast',
  );
  const [n, oh, ow] = [info.batchSize, info.outHeight, info.outWidth];
  if (n * oh * ow * info.outChannels === 0) return null;
  const p = info.padInfo;
  const pads: [number, number, number, number] = [p.top, p.left, p.bottom, p.right];
  if (pads.some((v) => v < 0)) return null;
  const strides: [number, number] = [info.strideHeight, info.strideWidth];
  const dilations: [number, number] = [info.dilationHeight, info.dilationWidth];
  const unit = strides[0] === 1 && strides[1] === 1 && dilations[0] === 1 && dilations[1] === 1;
  // a filter larger than the output (the filter-gradient convolutions: dy as a 14x14 "filter" giving
  // a 3x3 output): im2col over the few output positions and one matmul — onnxruntime's Conv runs
  // these 2-13x slower than that (measured), XNNPACK too
  const big = info.filterHeight * info.filterWidth > oh * ow;
  if (big && !unit) return null;
  const form = big ? 'im2col' : 'conv';
  const outShape: [number, number, number, number] = [n, oh, ow, info.outChannels];
  const key = `${form}|${xShape.join('x')}|${fShape.join('x')}|${pads.join(',')}|${strides.join(',')}|${dilations.join(',')}`;
  return { key, form, outShape, pads, strides, dilations };
}

/**
 * y[n, a, b, :] = x[n, a:a+kh, b:b+kw, :] (flattened) · w (flattened to [kh·kw·C, CO]) for each of the
 * oh·ow output positions: slices stacked to [oh·ow, N, kh·kw·C], one batched MatMul, back to NHWC.
 */
function im2colModel(xShape: readonly number[], fShape: readonly number[], plan: ConvPlan): Uint8Array {
  const g = new OnnxGraphBuilder({ name: 'metalearn_conv2d_im2col' });
  g.addInput('x', [...xShape]);
  g.addInput('w', [...fShape]);
  const [n, , , c] = xShape as [number, number, number, number];
  const [kh, kw, , co] = fShape as [number, number, number, number];
  const [, oh, ow] = plan.outShape;
  const [pt, pl, pb, pr] = plan.pads;
  const x = pt + pl + pb + pr > 0 ? g.addNode('Pad', ['x', g.int64([0, pt, pl, 0, 0, pb, pr, 0])]) : 'x';
  const k = kh * kw * c;
  const flat = g.int64([1, n, k]);
  const cols: string[] = [];
  for (let a = 0; a < oh; a++) {
    for (let b = 0; b < ow; b++) {
      const win = g.addNode('Slice', [x, g.int64([a, b]), g.int64([a + kh, b + kw]), g.int64([1, 2])]);
      cols.push(g.addNode('Reshape', [win, flat]));
    }
  }
  const stacked = cols.length === 1 ? cols[0]! : g.addNode('Concat', cols, { axis: 0 }); // [oh·ow, N, K]
  const w2 = g.addNode('Reshape', ['w', g.int64([k, co])]);
  const y = g.addNode('MatMul', [stacked, w2]); // [oh·ow, N, CO]
  const yt = g.addNode('Transpose', [y], { perm: [1, 0, 2] });
  g.addNode('Reshape', [yt, g.int64([n, oh, ow, co])], {}, { output: 'y' });
  g.addOutput('y', [...plan.outShape]);
  return g.build().bytes;
}

function convModel(xShape: readonly number[], fShape: readonly number[], plan: ConvPlan): Uint8Array {
  if (plan.form === 'im2col') return im2colModel(xShape, fShape, plan);
  const g = new OnnxGraphBuilder({ name: 'metalearn_conv2d' });
  g.addInput('x', [...xShape]);
  g.addInput('w', [...fShape]);
  const xt = g.addNode('Transpose', ['x'], { perm: [0, 3, 1, 2] });
  const wt = g.addNode('Transpose', ['w'], { perm: [3, 2, 0, 1] });
  const y = g.addNode('Conv', [xt, wt], {
    kernel_shape: [fShape[0]!, fShape[1]!],
    pads: [plan.pads[0], plan.pads[1], plan.pads[2], plan.pads[3]],
    strides: plan.strides,
    dilations: plan.dilations,
  });
  g.addNode('Transpose', [y], { perm: [0, 2, 3, 1] }, { output: 'y' });
  g.addOutput('y', [...plan.outShape]);
  return g.build().bytes;
}

function sessionFor(key: string, build: () => Uint8Array, o: { binding: OrtBinding }): SyncSession {
  let s = sessions.get(key);
  if (s) {
    sessions.delete(key);
    sessions.set(key, s);
    return s;
  }
  const bytes = build();
  s = new o.binding.binding.InferenceSession();
  s.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  sessions.set(key, s);
  if (sessions.size > MAX_SESSIONS) {
    const [oldKey, old] = sessions.entries().next().value as [string, SyncSession];
    sessions.delete(oldKey);
    old.dispose();
  }
  return s;
}

/** The wasm kernel's result (counted), for calls a plan leaves there. */
function onWasm(name: OrtKernelName, args: KernelArgs): tf.TensorInfo {
  (counts[name] ??= { ort: 0, wasm: 0 }).wasm++;
  return originals[name]!.kernelFunc(args) as tf.TensorInfo;
}

/**
 * Run one cached session: inputs are fed as views of the wasm heap, the output is written into a new
 * wasm tensor's heap memory (allocated first: a heap growth would detach views taken before it).
 */
function runOnOrt(
  name: OrtKernelName,
  args: KernelArgs,
  key: string,
  build: () => Uint8Array,
  feeds: [string, tf.TensorInfo][],
  outShape: number[],
  outDtype: 'float32' | 'bool' = 'float32',
): tf.TensorInfo {
  const o = ort!;
  (counts[name] ??= { ort: 0, wasm: 0 }).ort++;
  const backend = args.backend as unknown as WasmBackendLike;
  let out: tf.TensorInfo | null = null;
  try {
    const session = sessionFor(key, build, o);
    out = backend.makeOutput(outShape, outDtype);
    const inputs: Record<string, unknown> = {};
    for (const [n, t] of feeds) inputs[n] = new o.Tensor(t.dtype as 'float32' | 'bool', backend.typedArrayFromHeap(t), t.shape);
    session.run(inputs, { y: new o.Tensor(outDtype, backend.typedArrayFromHeap(out), outShape) }, {});
    return out;
  } catch (e) {
    if (out) (args.backend as unknown as { disposeData(id: object): void }).disposeData(out.dataId);
    const shapes = feeds.map(([n, t]) => `${n} [${t.shape.join(',')}]`).join(', ');
    throw new Error(`engine/ort-kernels: ${name} (${shapes}) failed in onnxruntime: ${(e as Error).message} (METALEARN_ORT_KERNELS=0 runs it on the wasm kernel)`);
  }
}

function conv2dOrt(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs['x'] as tf.TensorInfo;
  const f = args.inputs['filter'] as tf.TensorInfo;
  const plan = ort && x.dtype === 'float32' && f.dtype === 'float32' ? ortConvPlan(x.shape, f.shape, args.attrs as Record<string, unknown>) : null;
  if (!plan) return onWasm('Conv2D', args);
  return runOnOrt('Conv2D', args, plan.key, () => convModel(x.shape, f.shape, plan), [['x', x], ['w', f]], plan.outShape);
}

/** Batched matmuls of at least this many multiply-adds run in onnxruntime (below it, call overhead wins). */
export const ORT_MATMUL_MIN_MACS = 1 << 20;
/**
 * Transposed or batched (rank 3, batch > 1) products go to onnxruntime from this size on: wasm runs
 * them in its generic loops, not XNNPACK (measured on one core, µs per call, wasm → onnxruntime:
 * MANN's [4,200]ᵀ·[4,328] 566 → 139, [4,328]·[200,328]ᵀ 337 → 51, [8,4,40]·[8,128,40]ᵀ 161 → 31;
 * [5,64]·[75,64]ᵀ (24k multiply-adds) 28 → 36, so smaller ones stay).
 */
export const ORT_MATMUL_SLOW_MIN_MACS = 1 << 15;

/** Output shape and key of a BatchMatMul call, or null when it stays on the wasm kernel. */
export function ortMatMulPlan(aShape: readonly number[], bShape: readonly number[], transposeA: boolean, transposeB: boolean): { key: string; outShape: number[] } | null {
  const r = aShape.length;
  if (r !== bShape.length || (r !== 2 && r !== 3)) return null;
  const [a1, a2] = aShape.slice(-2) as [number, number];
  const [b1, b2] = bShape.slice(-2) as [number, number];
  const [m, k] = transposeA ? [a2, a1] : [a1, a2];
  const [k2, n] = transposeB ? [b2, b1] : [b1, b2];
  const ba = r === 3 ? aShape[0]! : 1;
  const bb = r === 3 ? bShape[0]! : 1;
  if (k !== k2 || (ba !== bb && ba !== 1 && bb !== 1)) return null;
  const batch = Math.max(ba, bb);
  const slow = transposeA || transposeB || batch > 1;
  if (batch * m * n * k < (slow ? ORT_MATMUL_SLOW_MIN_MACS : ORT_MATMUL_MIN_MACS)) return null;
  const outShape = r === 3 ? [batch, m, n] : [m, n];
  return { key: `mm|${aShape.join('x')}|${bShape.join('x')}|${transposeA ? 1 : 0}${transposeB ? 1 : 0}`, outShape };
}

function matMulModel(aShape: readonly number[], bShape: readonly number[], transposeA: boolean, transposeB: boolean, outShape: number[]): Uint8Array {
  const g = new OnnxGraphBuilder({ name: 'metalearn_matmul' });
  g.addInput('a', [...aShape]);
  g.addInput('b', [...bShape]);
  const perm = aShape.length === 3 ? [0, 2, 1] : [1, 0];
  const a = transposeA ? g.addNode('Transpose', ['a'], { perm }) : 'a';
  const b = transposeB ? g.addNode('Transpose', ['b'], { perm }) : 'b';
  g.addNode('MatMul', [a, b], {}, { output: 'y' });
  g.addOutput('y', outShape);
  return g.build().bytes;
}

function batchMatMulOrt(args: KernelArgs): tf.TensorInfo {
  const a = args.inputs['a'] as tf.TensorInfo;
  const b = args.inputs['b'] as tf.TensorInfo;
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const plan = ort && a.dtype === 'float32' && b.dtype === 'float32' ? ortMatMulPlan(a.shape, b.shape, transposeA, transposeB) : null;
  if (!plan) return onWasm('BatchMatMul', args);
  return runOnOrt('BatchMatMul', args, plan.key, () => matMulModel(a.shape, b.shape, transposeA, transposeB, plan.outShape), [['a', a], ['b', b]], plan.outShape);
}

/**
 * Equal with at least this many output elements runs in onnxruntime: wasm's Equal is ~10x slower than
 * its Multiply (measured [75, 28, 28, 64]: 22 ms vs 2.2 ms in onnxruntime), and the max-pool gradient
 * compares every map with its upsampled max. (wasm's Multiply / Add / ResizeNearestNeighbor measured
 * faster than onnxruntime's, so they stay.) Below ~2^16 elements the call overhead wins.
 */
export const ORT_ELEMENTWISE_MIN_SIZE = 1 << 16;

function equalOrt(args: KernelArgs): tf.TensorInfo {
  const a = args.inputs['a'] as tf.TensorInfo;
  const b = args.inputs['b'] as tf.TensorInfo;
  if (!ort || a.dtype !== 'float32' || b.dtype !== 'float32') return onWasm('Equal', args);
  const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  if (tf.util.sizeFromShape(outShape) < ORT_ELEMENTWISE_MIN_SIZE) return onWasm('Equal', args);
  const key = `Equal|${a.shape.join('x')}|${b.shape.join('x')}`;
  const build = (): Uint8Array => {
    const g = new OnnxGraphBuilder({ name: 'metalearn_equal' });
    g.addInput('a', [...a.shape]);
    g.addInput('b', [...b.shape]);
    g.addNode('Equal', ['a', 'b'], {}, { output: 'y' });
    g.addOutput('y', outShape, 'bool');
    return g.build().bytes;
  };
  return runOnOrt('Equal', args, key, build, [['a', a], ['b', b]], outShape, 'bool');
}

const KERNELS: Record<OrtKernelName, (args: KernelArgs) => tf.TensorInfo> = {
  Conv2D: conv2dOrt,
  BatchMatMul: batchMatMulOrt,
  Equal: equalOrt,
};

/**
 * Route wasm's Conv2D through onnxruntime (true) or restore the wasm kernel (false). Returns whether
 * the onnxruntime kernel is active afterwards (false when onnxruntime-node cannot be loaded, or the
 * wasm backend is not registered). Idempotent.
 */
export function installOrtKernels(enable = true): boolean {
  if (!enable) {
    if (installed) {
      for (const name of Object.keys(KERNELS) as OrtKernelName[]) {
        tf.unregisterKernel(name, 'wasm');
        tf.registerKernel(originals[name]!);
      }
    }
    installed = false;
    for (const s of sessions.values()) s.dispose();
    sessions.clear();
    return false;
  }
  if (installed) return true;
  if (!loadOrtSync()) return false;
  const names = Object.keys(KERNELS) as OrtKernelName[];
  if (names.some((n) => !tf.getKernel(n, 'wasm'))) return false;
  threads = ortKernelThreads();
  for (const name of names) {
    const orig = tf.getKernel(name, 'wasm')!;
    originals[name] = orig;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: KERNELS[name] as tf.KernelFunc, setupFunc: orig.setupFunc, disposeFunc: orig.disposeFunc });
  }
  installed = true;
  return true;
}

/** Whether the onnxruntime kernels are installed, their threads, calls by kernel, open sessions. */
export function ortKernelInfo(): { active: boolean; threads: number; calls: Record<string, { ort: number; wasm: number }>; sessions: number } {
  return { active: installed, threads, calls: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, { ...v }])), sessions: sessions.size };
}
