import type * as tf from '@tensorflow/tfjs-core';
import type { Params } from '../nn/types.js';
import type { Sequential } from '../nn/sequential.js';
import { OnnxGraphBuilder, prod, type OnnxAttr, type OnnxAttrValue, type OnnxDType, type OnnxDim, type OnnxTensorData } from './builder.js';
import { ExportContext } from './context.js';

/**
 * A parameter standing for a graph value inside a {@link TraceGraph}: layers hand it to
 * `addParam` / `addInitializer` exactly like a tf.Tensor, and the trace puts the value's name in the
 * graph instead of numbers. Reading its data is an error (a layer that folds parameter values into
 * constants cannot be trained in a graph).
 */
export class SymbolicTensor {
  readonly dtype = 'float32';
  readonly rank: number;
  readonly size: number;
  constructor(
    readonly value: string,
    readonly shape: number[],
  ) {
    this.rank = shape.length;
    this.size = prod(shape);
  }
  dataSync(): never {
    throw new Error(`TraceGraph: the layer read the values of parameter '${this.value}'; graph training needs layers that pass parameters to the graph (OnnxGraphBuilder.addParam) instead of folding them into constants`);
  }
  dispose(): void {}
}

/** One recorded node: op, inputs, outputs and its attributes as given. */
export interface TraceNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, OnnxAttrValue>;
}

function attrPlain(v: OnnxAttrValue | undefined): number | number[] | string | string[] | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'object' && !Array.isArray(v) && (v as OnnxAttr).__onnxAttr) return (v as OnnxAttr).value as number | number[] | string | string[];
  return v as number | number[] | string | string[];
}

/** A numeric attribute list (or undefined). */
export function attrInts(n: TraceNode, name: string): number[] | undefined {
  const v = attrPlain(n.attrs[name]);
  if (v === undefined) return undefined;
  return Array.isArray(v) ? (v as number[]) : [v as number];
}

/** A numeric attribute (or `dflt`). */
export function attrNum(n: TraceNode, name: string, dflt: number): number {
  const v = attrPlain(n.attrs[name]);
  return typeof v === 'number' ? v : dflt;
}

/** Numpy-style broadcast of two shapes (throws on a mismatch). */
export function broadcastShapes(a: readonly number[], b: readonly number[], where: string): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${where}: shapes [${a}] and [${b}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

const UNARY = new Set(['Relu', 'Neg', 'Sqrt', 'Exp', 'Log', 'Sigmoid', 'Tanh', 'Identity', 'Cast', 'Not', 'LeakyRelu', 'Reciprocal', 'LogSoftmax', 'Softmax', 'Abs']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Equal', 'Greater', 'Less', 'Pow', 'GreaterOrEqual', 'LessOrEqual']);
const REDUCE_OPS = new Set(['ReduceSum', 'ReduceMean', 'ReduceSumSquare']);
const BOOL_OUT = new Set(['Equal', 'Greater', 'Less', 'Not', 'GreaterOrEqual', 'LessOrEqual']);

/**
 * An {@link OnnxGraphBuilder} that knows every value's static shape and keeps the node list, so that
 * {@link appendGradients} can differentiate the graph. Parameters enter as {@link SymbolicTensor}s
 * (from {@link symbolicParams}): a layer's `toOnnx` then emits its nodes reading graph inputs (or
 * adapted weights) instead of constants, so the one layer definition that exports a model also
 * builds its training graph. All shapes are concrete (a graph is built per batch geometry).
 */
export class TraceGraph extends OnnxGraphBuilder {
  readonly trace: TraceNode[] = [];
  private readonly shapes = new Map<string, number[]>();
  private readonly dtypes = new Map<string, OnnxDType>();
  private readonly consts = new Map<string, number[]>();
  private readonly memo = new Map<string, string[]>();
  private readonly producers = new Map<string, TraceNode>();
  private indexed = 0;
  /**
   * Batch statistics reported by batch-norm layers ({@link OnnxGraphBuilder.noteBatchStats}), in
   * emission order; `count` is the number of elements per channel of one example (the batch size
   * multiplies it).
   */
  readonly batchStats: { layer: string; mean: string; variance: string; count: number }[] = [];

  override noteBatchStats(layer: string, mean: string, variance: string, count: number): void {
    this.batchStats.push({ layer, mean, variance, count });
  }

  /** Static shape of a value (throws for an unknown name). */
  shapeOf(name: string): number[] {
    const s = this.shapes.get(name);
    if (!s) throw new Error(`TraceGraph: no shape known for value '${name}'`);
    return s;
  }

  /** Element type of a value. */
  dtypeOf(name: string): OnnxDType {
    return this.dtypes.get(name) ?? 'float32';
  }

  /** The recorded node that computes `name`, if any. */
  producerOf(name: string): TraceNode | undefined {
    for (; this.indexed < this.trace.length; this.indexed++) for (const o of this.trace[this.indexed]!.outputs) this.producers.set(o, this.trace[this.indexed]!);
    return this.producers.get(name);
  }

  /** Values of an integer constant (shapes, axes, pads), or undefined when `name` is not one. */
  constOf(name: string): number[] | undefined {
    return this.consts.get(name);
  }

  override addInput(name: string, shape: OnnxDim[], dtype: OnnxDType = 'float32'): string {
    if (!shape.every((d) => typeof d === 'number' && d >= 0)) throw new Error(`TraceGraph: input '${name}' needs a concrete shape, got [${shape}]`);
    super.addInput(name, shape, dtype);
    this.shapes.set(name, shape as number[]);
    this.dtypes.set(name, dtype);
    return name;
  }

  override addInitializer(name: string, value: tf.Tensor | OnnxTensorData, dtype?: OnnxDType): string {
    if (value instanceof SymbolicTensor) return value.value;
    if (!(value as OnnxTensorData).data || (value as { dataSync?: unknown }).dataSync) {
      throw new Error(`TraceGraph: initializer '${name}' is a concrete tensor; a layer must pass its parameters with addParam (they are graph inputs when training in a graph)`);
    }
    const v = value as OnnxTensorData;
    super.addInitializer(name, v, dtype);
    this.shapes.set(name, [...v.shape]);
    const dt = dtype ?? v.dtype ?? (v.data instanceof Int32Array ? 'int32' : v.data instanceof BigInt64Array ? 'int64' : 'float32');
    this.dtypes.set(name, dt);
    if (dt === 'int64' || dt === 'int32') this.consts.set(name, Array.from(v.data as ArrayLike<number | bigint>, Number));
    return name;
  }

  private readonly constMemo = new Map<string, string>();

  /** Integer constants are shared: equal values give one initializer (so equal nodes can be merged). */
  override int64(values: number[], base = 'const_i64'): string {
    const key = `i64:${values.join(',')}`;
    let v = this.constMemo.get(key);
    if (!v) this.constMemo.set(key, (v = super.int64(values, base)));
    return v;
  }

  /** Float constants up to 64 values are shared like {@link int64}'s. */
  override float(values: number | number[], shape?: number[], base = 'const_f'): string {
    const arr = typeof values === 'number' ? [values] : values;
    if (arr.length > 64) return super.float(values, shape, base);
    const key = `f32:${shape ? shape.join('x') : typeof values === 'number' ? 's' : arr.length}:${arr.map((x) => Math.fround(x)).join(',')}`;
    let v = this.constMemo.get(key);
    if (!v) this.constMemo.set(key, (v = super.float(values, shape, base)));
    return v;
  }

  override addParam(base: string, value: tf.Tensor, opts: { perm?: number[]; shape?: number[] } = {}): string {
    if (!(value instanceof SymbolicTensor)) {
      throw new Error(`TraceGraph: parameter '${base}' is a concrete tensor; build the graph's parameters with symbolicParams`);
    }
    if (opts.perm) return this.addNode('Transpose', [value.value], { perm: opts.perm });
    if (opts.shape) return this.addNode('Reshape', [value.value, this.int64(opts.shape)]);
    return value.value;
  }

  override addNodeMulti(
    op: string,
    inputs: string[],
    numOutputs: number,
    attrs: Record<string, OnnxAttrValue> = {},
    opts: { outputs?: string[]; name?: string; domain?: string } = {},
  ): string[] {
    if (opts.domain) throw new Error(`TraceGraph: op ${opts.domain}.${op} is not supported`);
    if (op === 'Reshape' && !opts.outputs && inputs[1] !== undefined) {
      // a reshape to the value's own shape is the value; a reshape of a reshape reads the original
      const to = this.consts.get(inputs[1]);
      const from = this.shapeOf(inputs[0]!);
      if (to && to.length === from.length && to.every((d, i) => d === from[i])) return [inputs[0]!];
      const src = this.producerOf(inputs[0]!);
      if (src?.op === 'Reshape' && to && !to.includes(0)) inputs = [src.inputs[0]!, inputs[1]];
    }
    // the same op on the same values is computed once (rules may recompute forward values, e.g. the
    // BatchNormalization rule's x − mean); every op a trace accepts is deterministic
    const key = opts.outputs ? undefined : JSON.stringify([op, inputs, numOutputs, attrs]);
    const seen = key !== undefined ? this.memo.get(key) : undefined;
    if (seen) return seen;
    const shape = this.infer({ op, inputs, outputs: [], attrs });
    const split = REDUCE_OPS.has(op) ? this.splitReduce(op, inputs, attrs) : null;
    const outs =
      op === 'Conv' && this.lowerConv(inputs, attrs, shape)
        ? this.emitIm2colConv(inputs, attrs, shape, opts.outputs?.[0])
        : split
          ? this.emitSplitReduce(op, inputs[0]!, split, attrNum({ op, inputs, outputs: [], attrs }, 'keepdims', 1), opts.outputs?.[0])
          : super.addNodeMulti(op, inputs, numOutputs, attrs, opts);
    const node: TraceNode = { op, inputs: [...inputs], outputs: outs, attrs };
    outs.forEach((o) => {
      this.shapes.set(o, shape);
      this.dtypes.set(o, BOOL_OUT.has(op) ? 'bool' : op === 'Cast' && attrNum(node, 'to', 1) === 9 ? 'bool' : 'float32');
    });
    this.trace.push(node);
    if (key !== undefined) this.memo.set(key, outs);
    return outs;
  }

  /**
   * Whether a Conv runs as im2col + one MatMul over the whole batch: 2-D, stride 1, no dilation or
   * groups, at most 8x8 outputs (Conv-4's last two blocks). onnxruntime's Conv takes its im2col + GEMM
   * per image, which is slow for such small maps when the filter is not a constant (measured, 2
   * threads: [80,64,7,7] 9.4 → 5.1 ms, [80,64,3,3] 4.7 → 0.8 ms; 14x14 maps are faster as a Conv).
   */
  private lowerConv(inputs: string[], attrs: Record<string, OnnxAttrValue>, out: number[]): boolean {
    const n: TraceNode = { op: 'Conv', inputs, outputs: [], attrs };
    if (out.length !== 4 || out[2]! * out[3]! > 64 || this.shapeOf(inputs[1]!)[1]! < 8) return false;
    if ((attrInts(n, 'strides') ?? [1, 1]).some((v) => v !== 1) || (attrInts(n, 'dilations') ?? [1, 1]).some((v) => v !== 1) || attrNum(n, 'group', 1) !== 1) return false;
    return true;
  }

  /**
   * A reduction over trailing axes and some leading ones (batch-norm's [0, 2, 3]) as two: the trailing
   * block first, then the rest of the small result. onnxruntime reduces a contiguous trailing block ~5x
   * faster (measured, [80,64,28,28], 2 threads: ReduceSum over [0,2,3] 1.52 ms, [2,3] then [0] 0.30 ms).
   */
  private splitReduce(op: string, inputs: string[], attrs: Record<string, OnnxAttrValue>): [number[], number[]] | null {
    const xs = this.shapeOf(inputs[0]!);
    const n: TraceNode = { op, inputs, outputs: [], attrs };
    const raw = op === 'ReduceSum' ? (inputs[1] ? this.consts.get(inputs[1]) : undefined) : attrInts(n, 'axes');
    if (!raw || xs.length < 3) return null;
    const axes = [...new Set(raw.map((a) => (a < 0 ? a + xs.length : a)))].sort((a, b) => a - b);
    let t = xs.length;
    while (t > 0 && axes.includes(t - 1)) t--;
    const trailing = axes.filter((a) => a >= t);
    const rest = axes.filter((a) => a < t);
    if (!trailing.length || !rest.length || prod(trailing.map((a) => xs[a]!)) < 16) return null;
    return [trailing, rest];
  }

  private emitSplitReduce(op: string, x: string, [trailing, rest]: [number[], number[]], keepdims: number, name?: string): string[] {
    const i64 = (v: number[]) => super.addInitializer(this.uniqueName('reduce_axes'), { data: v, shape: [v.length], dtype: 'int64' });
    const reduce = (o: string, v: string, axes: number[], keep: number, out?: string) =>
      super.addNodeMulti(o, o === 'ReduceSum' ? [v, i64(axes)] : [v], 1, o === 'ReduceSum' ? { keepdims: keep } : { axes, keepdims: keep }, { outputs: out !== undefined ? [out] : undefined })[0]!;
    const first = reduce(op, x, trailing, 1);
    // the mean of equal-sized means is the mean; a sum of squares continues as a sum; the second stage
    // names every axis (the trailing ones have size 1 by now) so keepdims 0 drops them all
    return [reduce(op === 'ReduceSumSquare' ? 'ReduceSum' : op, first, [...rest, ...trailing], keepdims, name)];
  }

  /**
   * The nodes of a lowered Conv. The output side (MatMul, bias, layout) is not recorded in {@link trace}:
   * gradients use the Conv rule; the input side is (see below).
   */
  private emitIm2colConv(inputs: string[], attrs: Record<string, OnnxAttrValue>, out: number[], name?: string): string[] {
    const n: TraceNode = { op: 'Conv', inputs, outputs: [], attrs };
    const [x, w, b] = inputs as [string, string, string | undefined];
    const [nb, cin, h, wd] = this.shapeOf(x) as [number, number, number, number];
    const [cout, , kh, kw] = this.shapeOf(w) as [number, number, number, number];
    const [ho, wo] = [out[2]!, out[3]!];
    const pads = attrInts(n, 'pads') ?? [0, 0, 0, 0];
    const raw = (op: string, ins: string[], a: Record<string, OnnxAttrValue> = {}) => super.addNodeMulti(op, ins, 1, a)[0]!;
    const i64 = (v: number[]) => super.addInitializer(this.uniqueName('im2col_const'), { data: v, shape: [v.length], dtype: 'int64' });
    // the input side (channels-last copy, im2col rows) is recorded and shared: the Conv rule's filter
    // gradient builds the very same nodes and gets these back instead of a second copy (a value that
    // only feeds the unrecorded MatMul gets no gradient of its own)
    const rec = (op: string, ins: string[], a: Record<string, OnnxAttrValue> = {}) => this.addNode(op, ins, a);
    const xl = rec('Transpose', [x], { perm: [0, 2, 3, 1] });
    const rows = im2colRows(xl, [nb, h, wd, cin], [kh, kw], pads, [ho, wo], rec, (v) => this.int64(v), (v, sh) => this.float(v, sh));
    const cols = rec('Reshape', [rows, this.int64([nb * ho * wo, kh * kw * cin])]);
    const wm = raw('Reshape', [raw('Transpose', [w], { perm: [2, 3, 1, 0] }), i64([kh * kw * cin, cout])]);
    let y = raw('MatMul', [cols, wm]);
    if (b) y = raw('Add', [y, b]);
    const yl = raw('Reshape', [y, i64([nb, ho, wo, cout])]);
    return super.addNodeMulti('Transpose', [yl], 1, { perm: [0, 3, 1, 2] }, { outputs: name !== undefined ? [name] : undefined });
  }

  private need(n: TraceNode, i: number): number[] {
    const v = n.inputs[i];
    if (v === undefined || v === '') throw new Error(`TraceGraph: ${n.op} needs input ${i}`);
    return this.shapeOf(v);
  }

  private constInput(n: TraceNode, i: number, what: string, required = false): number[] | undefined {
    const v = n.inputs[i];
    if (v === undefined || v === '') {
      if (required) throw new Error(`TraceGraph: ${n.op} needs its input ${what}`);
      return undefined;
    }
    const c = this.consts.get(v);
    if (!c) throw new Error(`TraceGraph: ${n.op} input ${what} must be a constant`);
    return c;
  }

  private infer(n: TraceNode): number[] {
    const op = n.op;
    const where = `TraceGraph: ${op}`;
    const x = () => this.need(n, 0);
    if (UNARY.has(op)) return [...x()];
    if (BINARY.has(op)) return broadcastShapes(x(), this.need(n, 1), where);
    switch (op) {
      case 'BatchNormalization': {
        if (attrNum(n, 'training_mode', 0) !== 0) throw new Error(`${where}: only the inference form (training_mode 0) is supported`);
        const s = x();
        for (let i = 1; i < 5; i++) {
          const p = this.need(n, i);
          if (p.length !== 1 || p[0] !== s[1]) throw new Error(`${where}: input ${i} must have shape [${s[1]}], got [${p}]`);
        }
        return [...s];
      }
      case 'Where':
        return broadcastShapes(broadcastShapes(x(), this.need(n, 1), where), this.need(n, 2), where);
      case 'Sum': {
        let s = x();
        for (let i = 1; i < n.inputs.length; i++) s = broadcastShapes(s, this.need(n, i), where);
        return s;
      }
      case 'Transpose': {
        const s = x();
        const perm = attrInts(n, 'perm') ?? s.map((_, i) => s.length - 1 - i);
        return perm.map((p) => s[p]!);
      }
      case 'Reshape': {
        const s = x();
        const t = this.constInput(n, 1, 'shape', true)!;
        const out = t.map((d, i) => (d === 0 ? s[i]! : d));
        const known = prod(out.filter((d) => d !== -1));
        const k = out.indexOf(-1);
        if (k >= 0) out[k] = prod(s) / known;
        if (prod(out) !== prod(s)) throw new Error(`${where}: cannot reshape [${s}] to [${t}]`);
        return out;
      }
      case 'Flatten': {
        const s = x();
        const a = attrNum(n, 'axis', 1);
        return [prod(s.slice(0, a)), prod(s.slice(a))];
      }
      case 'Expand':
        return broadcastShapes(x(), this.constInput(n, 1, 'shape', true)!, where);
      case 'Unsqueeze': {
        const s = [...x()];
        const axes = this.constInput(n, 1, 'axes', true)!;
        const r = s.length + axes.length;
        for (const a of axes.map((v) => (v < 0 ? v + r : v)).sort((p, q) => p - q)) s.splice(a, 0, 1);
        return s;
      }
      case 'ReduceMean':
      case 'ReduceSumSquare':
      case 'ReduceSum': {
        const s = x();
        const axesRaw = op === 'ReduceSum' ? this.constInput(n, 1, 'axes') : attrInts(n, 'axes');
        const axes = (axesRaw ?? s.map((_, i) => i)).map((a) => (a < 0 ? a + s.length : a));
        const keep = attrNum(n, 'keepdims', 1) === 1;
        return keep ? s.map((d, i) => (axes.includes(i) ? 1 : d)) : s.filter((_, i) => !axes.includes(i));
      }
      case 'MatMul': {
        const a = x();
        const b = this.need(n, 1);
        if (a.length < 2 || b.length < 2) throw new Error(`${where}: rank-1 operands are not supported`);
        if (a[a.length - 1] !== b[b.length - 2]) throw new Error(`${where}: [${a}] x [${b}] do not match`);
        const batch = broadcastShapes(a.slice(0, -2), b.slice(0, -2), where);
        return [...batch, a[a.length - 2]!, b[b.length - 1]!];
      }
      case 'Gemm': {
        const a = x();
        const b = this.need(n, 1);
        const m = attrNum(n, 'transA', 0) ? a[1]! : a[0]!;
        const nn = attrNum(n, 'transB', 0) ? b[0]! : b[1]!;
        return [m, nn];
      }
      case 'Conv': {
        const s = x();
        const w = this.need(n, 1);
        const k = w.slice(2);
        const strides = attrInts(n, 'strides') ?? k.map(() => 1);
        const dil = attrInts(n, 'dilations') ?? k.map(() => 1);
        if (attrPlain(n.attrs['auto_pad']) !== undefined && attrPlain(n.attrs['auto_pad']) !== 'NOTSET') throw new Error(`${where}: auto_pad is not supported (explicit pads only)`);
        const pads = attrInts(n, 'pads') ?? Array(2 * k.length).fill(0);
        const sp = k.map((kk, i) => Math.floor((s[2 + i]! + pads[i]! + pads[i + k.length]! - dil[i]! * (kk - 1) - 1) / strides[i]!) + 1);
        return [s[0]!, w[0]!, ...sp];
      }
      case 'MaxPool':
      case 'AveragePool': {
        const s = x();
        const k = attrInts(n, 'kernel_shape')!;
        const strides = attrInts(n, 'strides') ?? k.map(() => 1);
        if (attrPlain(n.attrs['auto_pad']) !== undefined && attrPlain(n.attrs['auto_pad']) !== 'NOTSET') throw new Error(`${where}: auto_pad is not supported (explicit pads only)`);
        const pads = attrInts(n, 'pads') ?? Array(2 * k.length).fill(0);
        const sp = k.map((kk, i) => Math.floor((s[2 + i]! + pads[i]! + pads[i + k.length]! - kk) / strides[i]!) + 1);
        return [s[0]!, s[1]!, ...sp];
      }
      case 'Pad': {
        const s = x();
        const p = this.constInput(n, 1, 'pads', true)!;
        return s.map((d, i) => d + p[i]! + p[i + s.length]!);
      }
      case 'Slice': {
        const s = x();
        const r = sliceRanges(s, this.constInput(n, 1, 'starts', true)!, this.constInput(n, 2, 'ends', true)!, this.constInput(n, 3, 'axes'), this.constInput(n, 4, 'steps'));
        return r.map((q) => q.len);
      }
      case 'Gather': {
        if (attrNum(n, 'axis', 0) !== 0) throw new Error(`${where}: only axis 0 is supported`);
        const idx = this.constInput(n, 1, 'indices', true)!;
        const d = x();
        if (this.shapeOf(n.inputs[1]!).length !== 1) throw new Error(`${where}: only 1-D indices are supported`);
        if (idx.some((v) => v < 0 || v >= d[0]!)) throw new Error(`${where}: indices out of range [0, ${d[0]})`);
        return [idx.length, ...d.slice(1)];
      }
      case 'ScatterND': {
        const d = x();
        const idx = this.constInput(n, 1, 'indices', true)!;
        const up = this.need(n, 2);
        if (up.length !== d.length || up[0] !== idx.length || up.some((v, i) => i > 0 && v !== d[i])) throw new Error(`${where}: updates [${up}] must be [${idx.length}, ${d.slice(1)}]`);
        return [...d];
      }
      case 'Concat': {
        const shapes = n.inputs.map((_, i) => this.need(n, i));
        let a = attrNum(n, 'axis', 0);
        if (a < 0) a += shapes[0]!.length;
        const out = [...shapes[0]!];
        out[a] = shapes.reduce((t, s) => t + s[a]!, 0);
        return out;
      }
      default:
        throw new Error(`${where}: op not supported in graph training (no shape rule)`);
    }
  }
}

/**
 * im2col as one Gather: the rows (pixels, channels-last) of `xl` [N, H, W, C] that each output pixel's
 * kh·kw taps read, in tap order, as [N·Ho·Wo·kh·kw, C] (reshape to [N·Ho·Wo, kh·kw·C] for the
 * MatMul). Taps in the zero padding read an appended zero row. One Gather of 256-byte rows is
 * ~3x faster in onnxruntime than kh·kw Slices and a Concat (each a full copy); maps of fewer than 16
 * channels use those Slices of the padded map and a Concat instead, in the same order.
 */
export function im2colRows(
  xl: string,
  [nb, h, w, c]: number[],
  [kh, kw]: number[],
  pads: number[],
  [ho, wo]: number[],
  node: (op: string, ins: string[], a?: Record<string, OnnxAttrValue>) => string,
  i64: (v: number[]) => string,
  f32: (v: number[], shape: number[]) => string,
): string {
  if (c! < 16) {
    // rows of a few floats gather slowly ([80,28,28,1]: 2.6 ms vs 1.5 ms): slices of the padded map
    let xp = xl;
    if (pads.some((p) => p !== 0)) xp = node('Pad', [xl, i64([0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!, 0])]);
    const hp = h! + pads[0]! + pads[2]!;
    const wp = w! + pads[1]! + pads[3]!;
    const taps: string[] = [];
    for (let a = 0; a < kh!; a++) {
      for (let b = 0; b < kw!; b++) taps.push(a === 0 && b === 0 && hp === ho && wp === wo ? xp : node('Slice', [xp, i64([a, b]), i64([a + ho!, b + wo!]), i64([1, 2])]));
    }
    return taps.length === 1 ? taps[0]! : node('Concat', taps, { axis: 3 });
  }
  const rows = nb! * h! * w!;
  const idx: number[] = new Array(nb! * ho! * wo! * kh! * kw!);
  let k = 0;
  let padded = false;
  for (let n = 0; n < nb!; n++) {
    for (let i = 0; i < ho!; i++) {
      for (let j = 0; j < wo!; j++) {
        for (let a = 0; a < kh!; a++) {
          for (let b = 0; b < kw!; b++) {
            const ii = i + a - pads[0]!;
            const jj = j + b - pads[1]!;
            const out = ii < 0 || jj < 0 || ii >= h! || jj >= w!;
            if (out) padded = true;
            idx[k++] = out ? rows : n * h! * w! + ii * w! + jj;
          }
        }
      }
    }
  }
  let flat = node('Reshape', [xl, i64([rows, c!])]);
  if (padded) flat = node('Concat', [flat, f32(new Array(c!).fill(0), [1, c!])], { axis: 0 });
  return node('Gather', [flat, i64(idx)], { axis: 0 });
}

/** Per-axis ranges of an ONNX Slice on `shape` (steps ±1 only). */
export function sliceRanges(shape: readonly number[], starts: number[], ends: number[], axes?: number[], steps?: number[]): { start: number; len: number; step: number }[] {
  const out = shape.map((d) => ({ start: 0, len: d, step: 1 }));
  const ax = axes ?? starts.map((_, i) => i);
  ax.forEach((a0, i) => {
    const a = a0 < 0 ? a0 + shape.length : a0;
    const d = shape[a]!;
    const step = steps?.[i] ?? 1;
    if (step !== 1 && step !== -1) throw new Error(`TraceGraph: Slice steps other than ±1 are not supported (got ${step})`);
    let s = starts[i]!;
    let e = ends[i]!;
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (step === 1) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
      out[a] = { start: s, len: Math.max(e - s, 0), step };
    } else {
      s = Math.min(Math.max(s, -1), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
      out[a] = { start: s, len: Math.max(s - e, 0), step };
    }
  });
  return out;
}

/**
 * Parameters of `model` as {@link SymbolicTensor}s naming graph values: `valueOf(key)` gives the
 * value name for each flat key (default: a new graph input named like the key).
 */
export function symbolicParams(g: TraceGraph, shapes: Record<string, number[]>, valueOf?: (key: string) => string): Params {
  const out: Params = {};
  for (const [k, s] of Object.entries(shapes)) {
    const v = valueOf ? valueOf(k) : g.addInput(k, s);
    out[k] = new SymbolicTensor(v, [...s]) as unknown as tf.Tensor;
  }
  return out;
}

/**
 * Emit `model`'s layers on `g` reading value `input` (channels-last, like tfjs) with `params`
 * (symbolic or concrete); returns the output value in channels-last layout. The walk
 * {@link exportOnnx} does, usable on any builder.
 */
export function emitLayers(g: OnnxGraphBuilder, model: Sequential, params: Params, input: string, opts: { batchStats?: boolean; state?: Params; poolBeforeRelu?: boolean } = {}): string {
  const ctx = new ExportContext(g, { batchStats: opts.batchStats });
  const pv = model.localViews(params);
  const sv = model.localViews(opts.state);
  let cur = input;
  // a ReLU followed by a max-pool runs after the pool (the same values, since ReLU is monotone;
  // its mask and its gradient then touch a quarter of the elements), as the tfjs layers do
  const order = model.layers.map((_, i) => i);
  if (opts.poolBeforeRelu) {
    for (let i = 0; i + 1 < order.length; i++) {
      if (model.layers[i]!.kind === 'relu' && model.layers[i + 1]!.kind === 'maxpool') {
        order[i] = i + 1;
        order[i + 1] = i;
        i++;
      }
    }
  }
  order.forEach((i, pos) => {
    const l = model.layers[i]!;
    // per-example input shape at this position (a swapped ReLU sees the pooled shape)
    ctx.shape = [...model.shapes[i < pos ? pos + 1 : i]!];
    ctx.state = opts.state ? sv[i] : undefined;
    try {
      cur = l.toOnnx(g, pv[i]!, cur, ctx);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`layer ${i} (${l.kind} '${l.name}') failed: ${msg}`, { cause: e });
    }
    if (!g.has(cur)) throw new Error(`layer ${i} (${l.kind} '${l.name}') returned '${cur}', which is not a value of the graph`);
  });
  ctx.shape = [...model.outputShape];
  return ctx.channelsLast(cur);
}
