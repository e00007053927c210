import { prod } from './builder.js';
import { attrInts, attrNum, im2colRows, sliceRanges, type TraceGraph, type TraceNode } from './trace.js';

/**
 * Reverse-mode differentiation of an ONNX graph, written as more ONNX nodes on the same
 * {@link TraceGraph}. Every gradient is built from ops that have gradient rules here too (Conv's input
 * gradient is a Conv with the flipped, in/out-swapped filter; its filter gradient is one MatMul over
 * the im2col rows, a Gather whose adjoint is a ScatterND add and back; pool gradients are masks and
 * widened copies broadcast over the window), so the result can be differentiated again: second-order MAML is `appendGradients` of a
 * graph that already holds one.
 *
 * Supported ops: the layers' forward ops (Conv 2-D with stride 1, MaxPool / AveragePool with window =
 * stride and no padding, Gemm, MatMul, batch-norm arithmetic, activations, Transpose, Reshape,
 * Flatten, reductions, LogSoftmax), BatchNormalization in its inference form, and every op the rules
 * emit. An op outside that set on the path from `wrt` to `y` is an error naming it.
 */

type Vjp = (g: TraceGraph, n: TraceNode, gy: string, needs: (i: number) => boolean) => (string | null)[];

/** rules that take an upstream gradient of any shape broadcastable to their output */
const BROADCAST_OK = new Set(['Add', 'Sub', 'Mul', 'Div', 'Neg', 'Sum', 'Identity']);

const NON_DIFF = new Set(['Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'Not', 'Cast', 'Shape']);

/**
 * Bring a gradient `v` to shape `to`: sum over the axes `to` broadcasts along (reverse of numpy
 * broadcasting), and Expand where `v` is still smaller (gradient contributions may arrive in a
 * broadcastable shape, see {@link appendGradients}).
 */
function reduceTo(g: TraceGraph, v: string, to: readonly number[]): string {
  const from = g.shapeOf(v);
  if (from.length === to.length && from.every((d, i) => d === to[i])) return v;
  const lead = Math.max(from.length - to.length, 0);
  const axes: number[] = [];
  for (let i = 0; i < from.length; i++) {
    const t = i < lead ? 1 : to[i - lead]!;
    if (i < lead || (t === 1 && from[i] !== 1)) axes.push(i);
  }
  let r = axes.length ? g.addNode('ReduceSum', [v, g.int64(axes)], { keepdims: 1 }) : v;
  const rs = g.shapeOf(r).slice(lead);
  const padded = [...Array(Math.max(to.length - rs.length, 0)).fill(1), ...rs];
  if (lead > 0 || padded.length !== g.shapeOf(r).length) r = g.addNode('Reshape', [r, g.int64(padded)]);
  if (padded.some((d, i) => d !== to[i])) r = g.addNode('Expand', [r, g.int64([...to])]);
  return r;
}

function transposeLast2(g: TraceGraph, v: string): string {
  const r = g.shapeOf(v).length;
  const perm = Array.from({ length: r }, (_, i) => i);
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return g.addNode('Transpose', [v], { perm });
}

/**
 * Nearest-neighbour upsampling of [N, C, h, w] by the window, then zero-padded to `full`'s spatial
 * size. Written as Concats of the value with itself (onnxruntime: ~3x faster than Expand or a
 * broadcasting Mul on these shapes, ~1.3x faster than Resize; measured on [80, 64, 14, 14]).
 */
function upsample(g: TraceGraph, v: string, k: number[], full: readonly number[]): string {
  const [n, c, h, w] = g.shapeOf(v) as [number, number, number, number];
  let u = g.addNode('Reshape', [v, g.int64([n, c, h, w, 1])]);
  if (k[1]! > 1) u = g.addNode('Concat', Array(k[1]!).fill(u), { axis: 4 });
  u = g.addNode('Reshape', [u, g.int64([n, c, h, 1, w * k[1]!])]);
  if (k[0]! > 1) u = g.addNode('Concat', Array(k[0]!).fill(u), { axis: 3 });
  u = g.addNode('Reshape', [u, g.int64([n, c, h * k[0]!, w * k[1]!])]);
  const ph = full[2]! - h * k[0]!;
  const pw = full[3]! - w * k[1]!;
  if (ph > 0 || pw > 0) u = g.addNode('Pad', [u, g.int64([0, 0, 0, 0, 0, 0, ph, pw])]);
  return u;
}

/** [N, C, h, w] → [N, C, h, 1, w·kw]: each value repeated kw times along w (a Concat of copies). */
function widen(g: TraceGraph, v: string, kw: number): string {
  const [n, c, h, w] = g.shapeOf(v) as [number, number, number, number];
  let u = g.addNode('Reshape', [v, g.int64([n, c, h, w, 1])]);
  if (kw > 1) u = g.addNode('Concat', Array(kw).fill(u), { axis: 4 });
  return g.addNode('Reshape', [u, g.int64([n, c, h, 1, w * kw])]);
}

function scalar(g: TraceGraph, v: number): string {
  return g.float(v, []);
}

function checkPool(n: TraceNode, g: TraceGraph): number[] {
  const k = attrInts(n, 'kernel_shape')!;
  const s = attrInts(n, 'strides') ?? k.map(() => 1);
  const pads = attrInts(n, 'pads') ?? [];
  if (k.length !== 2 || g.shapeOf(n.inputs[0]!).length !== 4) throw new Error(`appendGradients: ${n.op} gradient supports 2-D pooling only`);
  if (k.some((kk, i) => kk !== s[i]) || pads.some((p) => p !== 0) || attrNum(n, 'ceil_mode', 0) !== 0) {
    throw new Error(`appendGradients: ${n.op} gradient needs window = stride, no padding, no ceil_mode (got kernel [${k}], strides [${s}], pads [${pads}])`);
  }
  return k;
}

const RULES: Record<string, Vjp> = {
  Identity: (_g, _n, gy) => [gy],
  Neg: (g, _n, gy) => [g.addNode('Neg', [gy])],
  Add: (g, n, gy, need) => [need(0) ? reduceTo(g, gy, g.shapeOf(n.inputs[0]!)) : null, need(1) ? reduceTo(g, gy, g.shapeOf(n.inputs[1]!)) : null],
  Sub: (g, n, gy, need) => [need(0) ? reduceTo(g, gy, g.shapeOf(n.inputs[0]!)) : null, need(1) ? g.addNode('Neg', [reduceTo(g, gy, g.shapeOf(n.inputs[1]!))]) : null],
  Sum: (g, n, gy, need) => n.inputs.map((x, i) => (need(i) ? reduceTo(g, gy, g.shapeOf(x)) : null)),
  Mul: (g, n, gy, need) => {
    const [a, b] = n.inputs as [string, string];
    // a·a (batch-norm's squared deviations): one full-size product 2·gy·a, with 2·gy formed first
    // while gy may still be a small per-channel term
    if (a === b) return [reduceTo(g, g.addNode('Mul', [g.addNode('Mul', [gy, scalar(g, 2)]), a]), g.shapeOf(a)), null];
    return [need(0) ? reduceTo(g, g.addNode('Mul', [gy, b]), g.shapeOf(a)) : null, need(1) ? reduceTo(g, g.addNode('Mul', [gy, a]), g.shapeOf(b)) : null];
  },
  Div: (g, n, gy, need) => {
    const [a, b] = n.inputs as [string, string];
    const y = n.outputs[0]!;
    return [
      need(0) ? reduceTo(g, g.addNode('Div', [gy, b]), g.shapeOf(a)) : null,
      need(1) ? reduceTo(g, g.addNode('Neg', [g.addNode('Mul', [gy, g.addNode('Div', [y, b])])]), g.shapeOf(b)) : null,
    ];
  },
  Max: (g, n, gy, need) => {
    // the gradient goes to the larger input (to `a` on ties)
    const [a, b] = n.inputs as [string, string];
    const ma = g.addNode('Cast', [g.addNode('GreaterOrEqual', [a, b])], { to: 1 });
    return [
      need(0) ? reduceTo(g, g.addNode('Mul', [gy, ma]), g.shapeOf(a)) : null,
      need(1) ? reduceTo(g, g.addNode('Mul', [gy, g.addNode('Sub', [scalar(g, 1), ma])]), g.shapeOf(b)) : null,
    ];
  },
  Sqrt: (g, n, gy) => [g.addNode('Div', [gy, g.addNode('Mul', [n.outputs[0]!, scalar(g, 2)])])],
  Exp: (g, n, gy) => [g.addNode('Mul', [gy, n.outputs[0]!])],
  Log: (g, n, gy) => [g.addNode('Div', [gy, n.inputs[0]!])],
  Relu: (g, n, gy) => [g.addNode('Mul', [gy, g.addNode('Cast', [g.addNode('Greater', [n.inputs[0]!, scalar(g, 0)])], { to: 1 })])],
  LeakyRelu: (g, n, gy) => {
    const alpha = attrNum(n, 'alpha', 0.01);
    const pos = g.addNode('Cast', [g.addNode('Greater', [n.inputs[0]!, scalar(g, 0)])], { to: 1 });
    // slope = alpha + (1 - alpha)·[x > 0]
    const slope = g.addNode('Add', [g.addNode('Mul', [pos, scalar(g, 1 - alpha)]), scalar(g, alpha)]);
    return [g.addNode('Mul', [gy, slope])];
  },
  Sigmoid: (g, n, gy) => {
    const y = n.outputs[0]!;
    return [g.addNode('Mul', [gy, g.addNode('Mul', [y, g.addNode('Sub', [scalar(g, 1), y])])])];
  },
  Tanh: (g, n, gy) => {
    const y = n.outputs[0]!;
    return [g.addNode('Mul', [gy, g.addNode('Sub', [scalar(g, 1), g.addNode('Mul', [y, y])])])];
  },
  LogSoftmax: (g, n, gy) => {
    const axis = attrNum(n, 'axis', -1);
    const s = g.addNode('ReduceSum', [gy, g.int64([axis])], { keepdims: 1 });
    return [g.addNode('Sub', [gy, g.addNode('Mul', [g.addNode('Exp', [n.outputs[0]!]), s])])];
  },
  Softmax: (g, n, gy) => {
    const axis = attrNum(n, 'axis', -1);
    const y = n.outputs[0]!;
    const s = g.addNode('ReduceSum', [g.addNode('Mul', [gy, y]), g.int64([axis])], { keepdims: 1 });
    return [g.addNode('Mul', [y, g.addNode('Sub', [gy, s])])];
  },
  Transpose: (g, n, gy) => {
    const r = g.shapeOf(n.inputs[0]!).length;
    const perm = attrInts(n, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
    const inv: number[] = [];
    perm.forEach((p, i) => (inv[p] = i));
    return [g.addNode('Transpose', [gy], { perm: inv })];
  },
  Reshape: (g, n, gy) => [g.addNode('Reshape', [gy, g.int64(g.shapeOf(n.inputs[0]!))]), null],
  Flatten: (g, n, gy) => [g.addNode('Reshape', [gy, g.int64(g.shapeOf(n.inputs[0]!))])],
  Expand: (g, n, gy) => [reduceTo(g, gy, g.shapeOf(n.inputs[0]!)), null],
  ReduceSum: (g, n, gy) => {
    const xs = g.shapeOf(n.inputs[0]!);
    const axes = ((n.inputs[1] ? g.constOf(n.inputs[1]) : undefined) ?? xs.map((_, i) => i)).map((a) => (a < 0 ? a + xs.length : a));
    const kept = xs.map((d, i) => (axes.includes(i) ? 1 : d));
    // left in the kept shape: the contribution broadcasts (see total())
    return [g.shapeOf(gy).length === xs.length ? gy : g.addNode('Reshape', [gy, g.int64(kept)]), null];
  },
  ReduceSumSquare: (g, n, gy) => {
    const x = n.inputs[0]!;
    const xs = g.shapeOf(x);
    const axes = (attrInts(n, 'axes') ?? xs.map((_, i) => i)).map((a) => (a < 0 ? a + xs.length : a));
    const kept = xs.map((d, i) => (axes.includes(i) ? 1 : d));
    const r = g.shapeOf(gy).length === xs.length ? gy : g.addNode('Reshape', [gy, g.int64(kept)]);
    // d/dx Σ x² = 2x, with 2·gy formed on the kept shape first
    return [g.addNode('Mul', [g.addNode('Mul', [r, scalar(g, 2)]), x])];
  },
  Unsqueeze: (g, n, gy) => [g.addNode('Reshape', [gy, g.int64(g.shapeOf(n.inputs[0]!))]), null],
  ReduceMean: (g, n, gy) => {
    const xs = g.shapeOf(n.inputs[0]!);
    const axes = (attrInts(n, 'axes') ?? xs.map((_, i) => i)).map((a) => (a < 0 ? a + xs.length : a));
    const kept = xs.map((d, i) => (axes.includes(i) ? 1 : d));
    const count = prod(axes.map((a) => xs[a]!));
    const r = g.shapeOf(gy).length === xs.length ? gy : g.addNode('Reshape', [gy, g.int64(kept)]);
    // left in the kept shape: the contribution broadcasts (see total())
    return [g.addNode('Mul', [r, scalar(g, 1 / count)])];
  },
  MatMul: (g, n, gy, need) => {
    const [a, b] = n.inputs as [string, string];
    return [
      need(0) ? reduceTo(g, g.addNode('MatMul', [gy, transposeLast2(g, b)]), g.shapeOf(a)) : null,
      need(1) ? reduceTo(g, g.addNode('MatMul', [transposeLast2(g, a), gy]), g.shapeOf(b)) : null,
    ];
  },
  Gemm: (g, n, gy, need) => {
    if (attrNum(n, 'transA', 0) || attrNum(n, 'transB', 0) || attrNum(n, 'alpha', 1) !== 1 || attrNum(n, 'beta', 1) !== 1) {
      throw new Error('appendGradients: Gemm gradient supports transA = transB = 0, alpha = beta = 1 only');
    }
    const [a, b, c] = n.inputs as [string, string, string | undefined];
    return [
      need(0) ? g.addNode('MatMul', [gy, transposeLast2(g, b)]) : null,
      need(1) ? g.addNode('MatMul', [transposeLast2(g, a), gy]) : null,
      c && need(2) ? reduceTo(g, gy, g.shapeOf(c)) : null,
    ];
  },
  Conv: (g, n, gy, need) => {
    const [x, w, b] = n.inputs as [string, string, string | undefined];
    const xs = g.shapeOf(x);
    const ws = g.shapeOf(w);
    if (xs.length !== 4) throw new Error('appendGradients: Conv gradient supports 2-D convolutions only');
    const k = ws.slice(2) as [number, number];
    const strides = attrInts(n, 'strides') ?? [1, 1];
    const dil = attrInts(n, 'dilations') ?? [1, 1];
    if (strides.some((s) => s !== 1) || dil.some((d) => d !== 1) || attrNum(n, 'group', 1) !== 1) {
      throw new Error(`appendGradients: Conv gradient supports stride 1, dilation 1, group 1 only (got strides [${strides}], dilations [${dil}])`);
    }
    const pads = attrInts(n, 'pads') ?? [0, 0, 0, 0];
    const ys = g.shapeOf(gy);
    const out: (string | null)[] = [null, null, null];
    if (need(0)) {
      const back = [k[0] - 1 - pads[0]!, k[1] - 1 - pads[1]!, k[0] - 1 - pads[2]!, k[1] - 1 - pads[3]!];
      if (back.some((p) => p < 0)) throw new Error(`appendGradients: Conv gradient needs pads ≤ kernel − 1 (got pads [${pads}], kernel [${k}])`);
      // dx = conv(dy, W flipped in space, in/out swapped)
      const flipped = g.addNode('Slice', [w, g.int64([-1, -1]), g.int64([-(k[0] + 1), -(k[1] + 1)]), g.int64([2, 3]), g.int64([-1, -1])]);
      const wt = g.addNode('Transpose', [flipped], { perm: [1, 0, 2, 3] });
      out[0] = g.addNode('Conv', [gy, wt], { kernel_shape: k, pads: back, strides: [1, 1], dilations: [1, 1], group: 1 });
    }
    if (need(1)) {
      // dW[o, c, a, b] = Σ_{n,i,j} dy[n, o, i, j] · xpad[n, c, i + a, j + b]: stack the kh·kw shifted views
      // of x (channels-last) and contract with dy in one MatMul
      const [nb, cin] = [xs[0]!, xs[1]!];
      const [ho, wo] = [ys[2]!, ys[3]!];
      const xl = g.addNode('Transpose', [x], { perm: [0, 2, 3, 1] });
      const rows = im2colRows(xl, [nb, xs[2]!, xs[3]!, cin], k, pads, [ho, wo], (op, ins, a) => g.addNode(op, ins, a), (v) => g.int64(v), (v, sh) => g.float(v, sh));
      const cols = g.addNode('Reshape', [rows, g.int64([nb * ho * wo, k[0] * k[1] * cin])]);
      const dy2 = g.addNode('Reshape', [g.addNode('Transpose', [gy], { perm: [1, 0, 2, 3] }), g.int64([ws[0]!, nb * ho * wo])]);
      const mm = g.addNode('MatMul', [dy2, cols]);
      out[1] = g.addNode('Transpose', [g.addNode('Reshape', [mm, g.int64([ws[0]!, k[0], k[1], cin])])], { perm: [0, 3, 1, 2] });
    }
    if (b && need(2)) out[2] = g.addNode('ReduceSum', [gy, g.int64([0, 2, 3])], { keepdims: 0 });
    return out;
  },
  MaxPool: (g, n, gy) => {
    const k = checkPool(n, g);
    const x = n.inputs[0]!;
    const [nb, c, h, w] = g.shapeOf(n.outputs[0]!) as [number, number, number, number];
    const full = g.shapeOf(x);
    const [hc, wc] = [h * k[0]!, w * k[1]!];
    // x as [N, C, h, kh, w·kw] (the rows and columns a window covers; a ragged edge is cut off)
    // against the pooled max widened along w only, broadcast along kh by the Equal and the Mul
    // themselves: no full-size upsampled copies (onnxruntime, block 1 of Conv-4: 4.9 vs 6.5 ms);
    // ties share the gradient, as the engine's tfjs gradient does
    const xc = hc === full[2] && wc === full[3] ? x : g.addNode('Slice', [x, g.int64([0, 0]), g.int64([hc, wc]), g.int64([2, 3])]);
    const x5 = g.addNode('Reshape', [xc, g.int64([nb, c, h, k[0]!, wc])]);
    const mask = g.addNode('Cast', [g.addNode('Equal', [x5, widen(g, n.outputs[0]!, k[1]!)])], { to: 1 });
    const dx = g.addNode('Reshape', [g.addNode('Mul', [mask, widen(g, gy, k[1]!)]), g.int64([nb, c, hc, wc])]);
    const [ph, pw] = [full[2]! - hc, full[3]! - wc];
    return [ph > 0 || pw > 0 ? g.addNode('Pad', [dx, g.int64([0, 0, 0, 0, 0, 0, ph, pw])]) : dx];
  },
  AveragePool: (g, n, gy) => {
    const k = checkPool(n, g);
    return [g.addNode('Mul', [upsample(g, gy, k, g.shapeOf(n.inputs[0]!)), scalar(g, 1 / (k[0]! * k[1]!))])];
  },
  Pad: (g, n, gy) => {
    const mode = n.attrs['mode'];
    if (mode !== undefined && mode !== 'constant') throw new Error('appendGradients: Pad gradient supports constant mode only');
    const xs = g.shapeOf(n.inputs[0]!);
    const p = g.constOf(n.inputs[1]!)!;
    if (p.some((v) => v < 0)) throw new Error('appendGradients: Pad gradient needs non-negative pads');
    const starts = xs.map((_, i) => p[i]!);
    return [g.addNode('Slice', [gy, g.int64(starts), g.int64(starts.map((s, i) => s + xs[i]!)), g.int64(xs.map((_, i) => i))]), null];
  },
  Slice: (g, n, gy) => {
    const xs = g.shapeOf(n.inputs[0]!);
    const c = (i: number) => (n.inputs[i] ? g.constOf(n.inputs[i]!) : undefined);
    const r = sliceRanges(xs, c(1)!, c(2)!, c(3), c(4));
    if (r.some((q) => q.step === -1)) {
      if (!r.every((q, i) => q.step === 1 ? q.len === xs[i] : q.start === xs[i]! - 1 && q.len === xs[i])) {
        throw new Error('appendGradients: Slice gradient with step −1 supports whole-axis reversal only');
      }
      // a reversal is its own adjoint
      return [g.addNode('Slice', [gy, ...n.inputs.slice(1)]), null, null, null, null];
    }
    const pads = [...r.map((q) => q.start), ...r.map((q, i) => xs[i]! - q.start - q.len)];
    return [pads.every((p) => p === 0) ? gy : g.addNode('Pad', [gy, g.int64(pads)]), null, null, null, null];
  },
  BatchNormalization: (g, n, gy, need) => {
    // y = (x − mean)·s + b with s = scale / √(var + ε), per channel (axis 1)
    const [x, scale, , mean, vr] = n.inputs as [string, string, string, string, string];
    const xs = g.shapeOf(x);
    const c = xs[1]!;
    const bs = [1, c, ...Array(xs.length - 2).fill(1)];
    const axes = [0, ...Array.from({ length: xs.length - 2 }, (_, i) => i + 2)];
    const inv = g.addNode('Div', [scalar(g, 1), g.addNode('Sqrt', [g.addNode('Add', [vr, scalar(g, attrNum(n, 'epsilon', 1e-5))])])]);
    const s = g.addNode('Mul', [scale, inv]);
    const out: (string | null)[] = [null, null, null, null, null];
    if (need(0)) out[0] = g.addNode('Mul', [gy, g.addNode('Reshape', [s, g.int64(bs)])]);
    const sumGy = need(2) || need(3) ? g.addNode('ReduceSum', [gy, g.int64(axes)], { keepdims: 0 }) : null;
    if (need(2)) out[2] = sumGy;
    if (need(3)) out[3] = g.addNode('Neg', [g.addNode('Mul', [sumGy!, s])]);
    if (need(1) || need(4)) {
      // x − mean: the forward pass's own value when the mean is a reshaped [1, C, 1, 1] statistic
      const src = g.producerOf(mean);
      const m = src?.op === 'Reshape' && g.shapeOf(src.inputs[0]!).join() === bs.join() ? src.inputs[0]! : g.addNode('Reshape', [mean, g.int64(bs)]);
      const p = g.addNode('ReduceSum', [g.addNode('Mul', [gy, g.addNode('Sub', [x, m])]), g.int64(axes)], { keepdims: 0 });
      if (need(1)) out[1] = g.addNode('Mul', [p, inv]);
      if (need(4)) out[4] = g.addNode('Mul', [g.addNode('Mul', [p, g.addNode('Mul', [scale, g.addNode('Mul', [inv, g.addNode('Mul', [inv, inv])])])]), scalar(g, -0.5)]);
    }
    return out;
  },
  Gather: (g, n, gy) => {
    // adjoint of a row gather: scatter-add the rows back (indices repeat: im2col reads a pixel per tap)
    const ds = g.shapeOf(n.inputs[0]!);
    const idx = g.constOf(n.inputs[1]!)!;
    const zero = g.addNode('Expand', [scalar(g, 0), g.int64(ds)]);
    const at = g.addConstant('scatter_idx', { data: idx, shape: [idx.length, 1], dtype: 'int64' });
    return [g.addNode('ScatterND', [zero, at, gy], { reduction: 'add' }), null];
  },
  ScatterND: (g, n, gy, need) => {
    if (n.attrs['reduction'] === undefined || String(n.attrs['reduction']) !== 'add') throw new Error("appendGradients: ScatterND gradient supports reduction 'add' only");
    const idx = g.constOf(n.inputs[1]!)!;
    return [need(0) ? gy : null, null, need(2) ? g.addNode('Gather', [gy, g.int64(idx)], { axis: 0 }) : null];
  },
  Concat: (g, n, gy, need) => {
    const s0 = g.shapeOf(n.inputs[0]!);
    let axis = attrNum(n, 'axis', 0);
    if (axis < 0) axis += s0.length;
    let off = 0;
    return n.inputs.map((x, i) => {
      const len = g.shapeOf(x)[axis]!;
      const start = off;
      off += len;
      return need(i) ? g.addNode('Slice', [gy, g.int64([start]), g.int64([start + len]), g.int64([axis])]) : null;
    });
  },
};

/** Ops {@link appendGradients} can differentiate. */
export const DIFFERENTIABLE_OPS: readonly string[] = Object.keys(RULES);

/**
 * Append to `g` the nodes computing d`y`/d`wrt[i]` for a scalar `y` (shape []); returns the gradient
 * value names in `wrt`'s order (a `wrt` that `y` does not depend on gets a zero constant). Only nodes
 * on a path from `wrt` to `y` are differentiated; gradients flow through every node already in the
 * graph, including the nodes of earlier `appendGradients` calls (second order). Values that depend
 * on `wrt` only through non-differentiable ops (comparisons, casts) get no gradient, as in autograd.
 */
export function appendGradients(g: TraceGraph, y: string, wrt: readonly string[]): string[] {
  if (g.shapeOf(y).length !== 0 && g.shapeOf(y).some((d) => d !== 1)) throw new Error(`appendGradients: '${y}' must be a scalar, has shape [${g.shapeOf(y)}]`);
  const nodes = g.trace.slice();
  const dep = new Set(wrt);
  for (const n of nodes) {
    if (NON_DIFF.has(n.op)) continue;
    if (n.inputs.some((i) => dep.has(i))) n.outputs.forEach((o) => dep.add(o));
  }
  if (!dep.has(y)) return wrt.map((w) => g.float(new Array(prod(g.shapeOf(w))).fill(0), g.shapeOf(w), 'zero_grad'));
  const contrib = new Map<string, string[]>();
  const add = (v: string, gv: string) => {
    const l = contrib.get(v);
    if (l) l.push(gv);
    else contrib.set(v, [gv]);
  };
  // a value's gradient is the sum of its contributions, which may have a broadcastable shape (e.g.
  // batch-norm's per-channel terms): Add broadcasts them for free, and an Expand is added only when
  // the consuming rule needs the exact shape
  const total = (v: string, exact: boolean): string | null => {
    const l = contrib.get(v);
    if (!l || l.length === 0) return null;
    // Adds, not one Sum: onnxruntime's Sum is ~2x slower than a chain of Adds ([80,64,28,28] + [80,64,28,28]
    // + [1,64,1,1]: Sum 4.0 ms, two Adds 2.2 ms); the full-size terms go first, broadcast ones last
    const sorted = [...l].sort((a, b) => prod(g.shapeOf(b)) - prod(g.shapeOf(a)));
    let s = sorted.reduce((acc, v) => g.addNode('Add', [acc, v]));
    contrib.set(v, [s]);
    const want = g.shapeOf(v);
    const have = g.shapeOf(s);
    if (exact && (have.length !== want.length || have.some((d, i) => d !== want[i]))) {
      s = reduceTo(g, s, want);
      contrib.set(v, [s]);
    }
    return s;
  };
  add(y, g.shapeOf(y).length === 0 ? scalar(g, 1) : g.float(1, g.shapeOf(y)));
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (NON_DIFF.has(n.op) || !n.outputs.some((o) => dep.has(o))) continue;
    if (n.outputs.length !== 1) throw new Error(`appendGradients: ${n.op} has ${n.outputs.length} outputs; only single-output ops are supported`);
    const gy = total(n.outputs[0]!, !BROADCAST_OK.has(n.op));
    if (!gy) continue;
    const rule = RULES[n.op];
    if (!rule) throw new Error(`appendGradients: no gradient rule for ONNX op ${n.op} (on the path to '${y}'); supported: ${DIFFERENTIABLE_OPS.join(', ')}`);
    const needs = (k: number) => {
      const v = n.inputs[k];
      return v !== undefined && v !== '' && dep.has(v) && g.dtypeOf(v) === 'float32';
    };
    const gs = rule(g, n, gy, needs);
    gs.forEach((gx, k) => {
      if (gx && needs(k)) add(n.inputs[k]!, gx);
    });
  }
  return wrt.map((w) => {
    const t = total(w, true);
    if (t) return t;
    return g.float(new Array(prod(g.shapeOf(w))).fill(0), g.shapeOf(w), 'zero_grad');
  });
}
