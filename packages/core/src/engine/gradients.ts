/**
 * The project's gradient registry.
 *
 * `@tensorflow/tfjs-core` on its own registers NO gradients (the `@tensorflow/tfjs` umbrella package
 * does, from ESM files Node cannot load directly), so the engine registers its own, for every op
 * the project's models use. Every gradient below is written with ordinary tfjs ops that themselves
 * have gradients here, so gradients of gradients (MAML, iMAML, Hessian-vector products) work on
 * every backend, wasm included. Convolution gradients use forward convolutions only (conv.ts), and
 * pooling gradients use reshape/pad/mask ops (pool.ts) instead of the MaxPoolGrad/AvgPoolGrad kernels.
 *
 * A gradient must not differentiate through a SAVED OUTPUT of its op: tfjs clones saved tensors
 * before the op's own tape node is recorded, so a saved output is disconnected from the graph and
 * second-order terms through it would be silently lost. Gradients here recompute what they need
 * from saved inputs (outputs are only used where they feed non-differentiable masks). The same
 * applies to `tf.customGrad` ops (tf.logSoftmax, tf.losses.softmaxCrossEntropy): use the engine's
 * `logSoftmax` / `crossEntropy` (ops.ts), which are built from plain ops.
 *
 * `tf.registerGradient` replaces any gradient registered earlier for the same kernel (for example by
 * `@tensorflow/tfjs-node`), so calling `registerProjectGradients()` after loading a backend makes these
 * the ones in use.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, NamedAttrMap, Tensor } from '@tensorflow/tfjs-core';
import { conv2dFilterGrad, conv2dInputGrad, convGeometry, type ConvPad } from './conv.js';
import { avgPoolGrad, maxPoolGrad, poolGeometry } from './pool.js';
import { expandTo, reduceTo } from './util.js';

type Grads = Record<string, () => Tensor>;
type GradFn = (dy: Tensor, saved: Tensor[], attrs: NamedAttrMap) => Grads;

const configs: GradConfig[] = [];

function reg(kernelName: string, inputsToSave: string[], outputsToSave: boolean[], gradFunc: GradFn): void {
  configs.push({ kernelName, inputsToSave, outputsToSave, gradFunc: gradFunc as GradConfig['gradFunc'] });
}
function regAll(kernelName: string, outputsToSave: boolean[], gradFunc: GradFn): void {
  configs.push({ kernelName, saveAllInputs: true, outputsToSave, gradFunc: gradFunc as GradConfig['gradFunc'] });
}

const f32 = (t: Tensor): Tensor => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));
const zerosOf = (t: Tensor): Tensor => tf.zeros(t.shape, 'float32');
const num = (v: unknown): number => v as number;

// ---------------------------------------------------------------- non-differentiable (zero) grads
for (const k of ['Equal', 'NotEqual', 'Greater', 'GreaterEqual', 'Less', 'LessEqual', 'LogicalAnd', 'LogicalOr', 'LogicalXor', 'FloorDiv']) {
  reg(k, ['a', 'b'], [], (_dy, [a, b]) => ({ a: () => zerosOf(a!), b: () => zerosOf(b!) }));
}
for (const k of ['LogicalNot', 'Sign', 'Floor', 'Ceil', 'Round', 'Step', 'IsNan', 'IsInf', 'IsFinite', 'ZerosLike', 'OnesLike']) {
  reg(k, ['x'], [], (_dy, [x]) => ({ x: () => zerosOf(x!) }));
}
for (const k of ['ArgMax', 'ArgMin']) reg(k, ['x'], [], (_dy, [x]) => ({ x: () => zerosOf(x!) }));
reg('OneHot', ['indices'], [], (_dy, [i]) => ({ indices: () => zerosOf(i!) }));

// ---------------------------------------------------------------- unary
reg('Identity', [], [], (dy) => ({ x: () => tf.clone(f32(dy)) }));
reg('Cast', ['x'], [], (dy, [x], attrs) => ({
  // float -> float passes the gradient; casts from or to integers/bools are not differentiable
  x: () => (x!.dtype === 'float32' && (attrs['dtype'] as string) === 'float32' ? tf.clone(f32(dy)) : zerosOf(x!)),
}));
reg('Neg', [], [], (dy) => ({ x: () => tf.neg(dy) }));
reg('Abs', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.sign(f32(x!))) }));
reg('Exp', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.exp(x!)) }));
reg('Expm1', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.exp(x!)) }));
reg('Log', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, f32(x!)) }));
reg('Log1p', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.add(x!, 1)) }));
reg('Sqrt', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.mul(tf.sqrt(f32(x!)), 2)) }));
reg('Rsqrt', ['x'], [], (dy, [x]) => ({ x: () => tf.div(tf.mul(dy, -0.5), tf.mul(x!, tf.sqrt(x!))) }));
reg('Square', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.mul(f32(x!), 2)) }));
reg('Reciprocal', ['x'], [], (dy, [x]) => ({ x: () => tf.neg(tf.div(dy, tf.square(x!))) }));
reg('Sigmoid', ['x'], [], (dy, [x]) => ({
  x: () => {
    const y = tf.sigmoid(x!);
    return tf.mul(dy, tf.mul(y, tf.sub(1, y)));
  },
}));
reg('Tanh', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.sub(1, tf.square(tf.tanh(x!)))) }));
reg('Softplus', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.sigmoid(x!)) }));
reg('Relu', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.step(f32(x!), 0)) }));
reg('LeakyRelu', ['x'], [], (dy, [x], attrs) => ({ x: () => tf.mul(dy, tf.step(x!, num(attrs['alpha']))) }));
reg('Relu6', ['x'], [], (dy, [x]) => ({
  x: () => tf.mul(dy, tf.cast(tf.logicalAnd(tf.greater(x!, 0), tf.less(x!, 6)), 'float32')),
}));
reg('Elu', ['x'], [], (dy, [x]) => ({ x: () => tf.where(tf.greater(x!, 0), dy, tf.mul(dy, tf.exp(tf.minimum(x!, 0)))) }));
const SELU_SCALE = 1.0507009873554804934193349852946;
const SELU_SCALEALPHA = 1.7580993408473768599402175208123;
reg('Selu', ['x'], [], (dy, [x]) => ({
  x: () => tf.where(tf.greater(x!, 0), tf.mul(dy, SELU_SCALE), tf.mul(dy, tf.mul(tf.exp(x!), SELU_SCALEALPHA))),
}));
reg('Sin', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.cos(x!)) }));
reg('Cos', ['x'], [], (dy, [x]) => ({ x: () => tf.neg(tf.mul(dy, tf.sin(x!))) }));
reg('Tan', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.square(tf.cos(x!))) }));
reg('Sinh', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.cosh(x!)) }));
reg('Cosh', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.sinh(x!)) }));
reg('Atan', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.add(1, tf.square(x!))) }));
reg('Asin', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.sqrt(tf.sub(1, tf.square(x!)))) }));
reg('Acos', ['x'], [], (dy, [x]) => ({ x: () => tf.neg(tf.div(dy, tf.sqrt(tf.sub(1, tf.square(x!))))) }));
reg('Asinh', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.sqrt(tf.add(1, tf.square(x!)))) }));
reg('Acosh', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.sqrt(tf.sub(tf.square(x!), 1))) }));
reg('Atanh', ['x'], [], (dy, [x]) => ({ x: () => tf.div(dy, tf.sub(1, tf.square(x!))) }));
reg('Erf', ['x'], [], (dy, [x]) => ({ x: () => tf.mul(dy, tf.mul(tf.exp(tf.neg(tf.square(x!))), 2 / Math.sqrt(Math.PI))) }));
reg('ClipByValue', ['x'], [], (dy, [x], attrs) => ({
  x: () =>
    tf.mul(
      dy,
      tf.cast(tf.logicalAnd(tf.greaterEqual(x!, num(attrs['clipValueMin'])), tf.lessEqual(x!, num(attrs['clipValueMax']))), 'float32'),
    ),
}));

// ---------------------------------------------------------------- binary (with broadcasting)
reg('Add', ['a', 'b'], [], (dy, [a, b]) => ({ a: () => reduceTo(dy, a!.shape), b: () => reduceTo(dy, b!.shape) }));
// negate after reducing: one op on the small side instead of one on the full-size gradient
reg('Sub', ['a', 'b'], [], (dy, [a, b]) => ({ a: () => reduceTo(dy, a!.shape), b: () => tf.neg(reduceTo(dy, b!.shape)) }));
reg('Multiply', ['a', 'b'], [], (dy, [a, b]) => ({
  a: () => reduceTo(tf.mul(dy, f32(b!)), a!.shape),
  b: () => reduceTo(tf.mul(dy, f32(a!)), b!.shape),
}));
reg('RealDiv', ['a', 'b'], [], (dy, [a, b]) => ({
  a: () => reduceTo(tf.div(dy, f32(b!)), a!.shape),
  b: () => reduceTo(tf.neg(tf.div(tf.mul(dy, f32(a!)), tf.square(f32(b!)))), b!.shape),
}));
reg('Pow', ['a', 'b'], [], (dy, [a, b]) => ({
  a: () => reduceTo(tf.mul(dy, tf.mul(f32(b!), tf.pow(f32(a!), tf.sub(f32(b!), 1)))), a!.shape),
  b: () => {
    const pos = tf.greater(a!, 0);
    const logA = tf.where(pos, tf.log(tf.where(pos, f32(a!), tf.onesLike(f32(a!)))), tf.zerosLike(f32(a!)));
    return reduceTo(tf.mul(dy, tf.mul(tf.pow(f32(a!), f32(b!)), logA)), b!.shape);
  },
}));
reg('SquaredDifference', ['a', 'b'], [], (dy, [a, b]) => {
  const two = () => tf.mul(dy, tf.mul(tf.sub(a!, b!), 2));
  return { a: () => reduceTo(two(), a!.shape), b: () => reduceTo(tf.neg(two()), b!.shape) };
});
reg('Maximum', ['a', 'b'], [], (dy, [a, b]) => ({
  a: () => reduceTo(tf.mul(dy, tf.cast(tf.greaterEqual(a!, b!), 'float32')), a!.shape),
  b: () => reduceTo(tf.mul(dy, tf.cast(tf.less(a!, b!), 'float32')), b!.shape),
}));
reg('Minimum', ['a', 'b'], [], (dy, [a, b]) => ({
  a: () => reduceTo(tf.mul(dy, tf.cast(tf.lessEqual(a!, b!), 'float32')), a!.shape),
  b: () => reduceTo(tf.mul(dy, tf.cast(tf.greater(a!, b!), 'float32')), b!.shape),
}));
reg('Atan2', ['a', 'b'], [], (dy, [a, b]) => {
  const d = () => tf.add(tf.square(a!), tf.square(b!));
  return {
    a: () => reduceTo(tf.div(tf.mul(dy, b!), d()), a!.shape),
    b: () => reduceTo(tf.div(tf.neg(tf.mul(dy, a!)), d()), b!.shape),
  };
});
reg('Prelu', ['x', 'alpha'], [], (dy, [x, alpha]) => {
  const pos = () => tf.greater(x!, 0);
  return {
    x: () => tf.where(pos(), dy, tf.mul(dy, alpha!)),
    alpha: () => reduceTo(tf.where(pos(), tf.zerosLike(dy), tf.mul(dy, x!)), alpha!.shape),
  };
});
regAll('AddN', [], (dy, saved) => {
  const out: Grads = {};
  saved.forEach((_, i) => (out[i] = () => tf.clone(dy)));
  return out;
});

// ---------------------------------------------------------------- reductions
function keepShape(xShape: number[], axis: unknown): { axes: number[]; keep: number[] } {
  const axes = tf.util.parseAxisParam(axis as number | number[], xShape);
  const keep = xShape.map((d, i) => (axes.includes(i) ? 1 : d));
  return { axes, keep };
}
reg('Sum', ['x'], [], (dy, [x], attrs) => ({
  x: () => {
    const { keep } = keepShape(x!.shape, attrs['axis']);
    return expandTo(tf.reshape(dy, keep), x!.shape);
  },
}));
reg('Mean', ['x'], [], (dy, [x], attrs) => ({
  x: () => {
    const { axes, keep } = keepShape(x!.shape, attrs['axis']);
    const n = axes.reduce((p, a) => p * x!.shape[a]!, 1);
    return expandTo(tf.div(tf.reshape(dy, keep), n), x!.shape);
  },
}));
function minMaxGrad(dy: Tensor, x: Tensor, y: Tensor, axis: unknown): Tensor {
  const { keep } = keepShape(x.shape, axis);
  const mask = tf.cast(tf.equal(x, tf.reshape(y, keep)), 'float32');
  return tf.mul(mask, tf.reshape(dy, keep));
}
reg('Max', ['x'], [true], (dy, [x, y], attrs) => ({ x: () => minMaxGrad(dy, x!, y!, attrs['reductionIndices']) }));
reg('Min', ['x'], [true], (dy, [x, y], attrs) => ({ x: () => minMaxGrad(dy, x!, y!, attrs['axis']) }));
reg('Cumsum', [], [], (dy, _s, attrs) => ({
  x: () => tf.cumsum(dy, num(attrs['axis']), attrs['exclusive'] as boolean, !(attrs['reverse'] as boolean)),
}));
reg('Softmax', ['logits'], [], (dy, [logits], attrs) => ({
  logits: () => {
    const y = tf.softmax(logits!, num(attrs['dim']));
    const dyy = tf.mul(dy, y);
    return tf.sub(dyy, tf.mul(y, tf.sum(dyy, [num(attrs['dim'])], true)));
  },
}));

// ---------------------------------------------------------------- shapes
reg('Reshape', ['x'], [], (dy, [x]) => ({ x: () => tf.reshape(dy, x!.shape) }));
reg('ExpandDims', ['input'], [], (dy, [x]) => ({ input: () => tf.reshape(dy, x!.shape) }));
reg('Transpose', [], [], (dy, _s, attrs) => {
  const perm = attrs['perm'] as number[];
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return { x: () => tf.transpose(dy, inv) };
});
reg('Reverse', [], [], (dy, _s, attrs) => ({ x: () => tf.reverse(dy, attrs['dims'] as number[]) }));
reg('Slice', ['x'], [], (dy, [x], attrs) => ({
  x: () => {
    const [begin, size] = tf.slice_util.parseSliceParams(x!, attrs['begin'] as number[], attrs['size'] as number[]);
    return tf.pad(
      dy,
      x!.shape.map((d, i) => [begin![i]!, d - begin![i]! - size![i]!] as [number, number]),
    );
  },
}));
reg('StridedSlice', ['x'], [], (dy, [x], attrs) => ({
  x: () => {
    const info = tf.slice_util.sliceInfo(
      x!.shape,
      attrs['begin'] as number[],
      attrs['end'] as number[],
      attrs['strides'] as number[],
      num(attrs['beginMask']),
      num(attrs['endMask']),
      num(attrs['ellipsisMask']),
      num(attrs['newAxisMask']),
      num(attrs['shrinkAxisMask']),
    );
    if (info.strides.some((s) => s <= 0) || info.finalShapeSparse.length !== x!.rank) {
      throw new Error(
        'engine/gradients.ts: gradient of stridedSlice is supported for positive strides without new axes only; use tf.slice / reshape',
      );
    }
    // sizes along every input axis
    const sizes = info.finalShapeSparse;
    let g: Tensor = tf.reshape(dy, sizes);
    for (let ax = 0; ax < x!.rank; ax++) {
      const s = info.strides[ax]!;
      if (s === 1) continue;
      // insert s-1 zeros after every element along `ax`
      const shp = g.shape.slice();
      const withUnit = [...shp.slice(0, ax + 1), 1, ...shp.slice(ax + 1)];
      const pads = withUnit.map((_, i) => (i === ax + 1 ? [0, s - 1] : [0, 0]) as [number, number]);
      g = tf.pad(tf.reshape(g, withUnit), pads);
      shp[ax] = shp[ax]! * s;
      g = tf.reshape(g, shp);
      // drop the trailing zeros after the last element
      g = tf.slice(g, shp.map(() => 0), shp.map((d, i) => (i === ax ? d - (s - 1) : d)));
    }
    return tf.pad(
      g,
      x!.shape.map((d, i) => [info.begin[i]!, d - info.begin[i]! - g.shape[i]!] as [number, number]),
    );
  },
}));
reg('PadV2', ['x'], [], (dy, [x], attrs) => ({
  x: () => tf.slice(dy, (attrs['paddings'] as [number, number][]).map((p) => p[0]), x!.shape),
}));
reg('Tile', ['x'], [], (dy, [x], attrs) => ({
  x: () => {
    const reps = attrs['reps'] as number[];
    const inter: number[] = [];
    reps.forEach((r, i) => inter.push(r, x!.shape[i]!));
    const axes = reps.map((_, i) => 2 * i);
    return tf.reshape(tf.sum(tf.reshape(dy, inter), axes), x!.shape);
  },
}));
reg('BroadcastTo', ['x'], [], (dy, [x]) => ({ x: () => reduceTo(dy, x!.shape) }));
// Each input's gradient is computed in its own tidy() by the engine, so every closure below
// builds its own slice (nothing is shared between closures).
regAll('Concat', [], (dy, saved, attrs) => {
  const shapes = saved.map((t) => t.shape);
  const axis = tf.util.parseAxisParam(num(attrs['axis']), shapes[0]!)[0]!;
  const out: Grads = {};
  let offset = 0;
  shapes.forEach((s, i) => {
    const begin = s.map((_, a) => (a === axis ? offset : 0));
    offset += s[axis]!;
    out[i] = () => tf.slice(dy, begin, s);
  });
  return out;
});
regAll('Pack', [], (dy, saved, attrs) => {
  const a0 = num(attrs['axis']);
  const axis = a0 < 0 ? a0 + dy.rank : a0; // tf.stack(xs, -1) records axis -1
  const out: Grads = {};
  saved.forEach((t, i) => {
    out[i] = () => {
      const begin = dy.shape.map((_, a) => (a === axis ? i : 0));
      const size = dy.shape.map((d, a) => (a === axis ? 1 : d));
      return tf.reshape(tf.slice(dy, begin, size), t.shape);
    };
  });
  return out;
});
configs.push({
  kernelName: 'Unpack',
  gradFunc: ((dys: Tensor | Tensor[], _s: Tensor[], attrs: NamedAttrMap) => ({
    value: () => tf.stack(Array.isArray(dys) ? dys : [dys], num(attrs['axis'])),
  })) as GradConfig['gradFunc'],
});
configs.push({
  kernelName: 'SplitV',
  gradFunc: ((dys: Tensor | Tensor[], _s: Tensor[], attrs: NamedAttrMap) => ({
    x: () => (Array.isArray(dys) ? tf.concat(dys, num(attrs['axis'])) : tf.clone(dys)),
  })) as GradConfig['gradFunc'],
});
reg('Select', ['condition'], [], (dy, [cond]) => ({
  condition: () => zerosOf(cond!),
  t: () => tf.where(cond!, dy, tf.zerosLike(dy)),
  e: () => tf.where(cond!, tf.zerosLike(dy), dy),
}));
reg('GatherV2', ['x', 'indices'], [], (dy, [x, indices], attrs) => ({
  x: () => {
    if (num(attrs['batchDims'] ?? 0) !== 0) {
      throw new Error('engine/gradients.ts: gradient of gather with batchDims > 0 is not supported');
    }
    const axis = tf.util.parseAxisParam(num(attrs['axis']), x!.shape)[0]!;
    const shp = x!.shape;
    const pre = shp.slice(0, axis).reduce((p, d) => p * d, 1);
    const post = shp.slice(axis + 1).reduce((p, d) => p * d, 1);
    const n = shp[axis]!;
    const m = indices!.size;
    // one-hot scatter as a matmul: differentiable, and runs on every backend (wasm lacks
    // UnsortedSegmentSum)
    const oh = tf.cast(tf.oneHot(tf.reshape(tf.cast(indices!, 'int32'), [m]), n), 'float32'); // [m, n]
    const dy3 = tf.reshape(dy, [pre, m, post]);
    const dx3 = tf.matMul(tf.reshape(oh, [1, m, n]) as tf.Tensor3D, dy3 as tf.Tensor3D, true, false); // [pre, n, post]
    return tf.reshape(dx3, shp);
  },
  indices: () => zerosOf(indices!),
}));

// ---------------------------------------------------------------- matmul
reg('BatchMatMul', ['a', 'b'], [], (dy, [a, b], attrs) => {
  const tA = attrs['transposeA'] as boolean;
  const tB = attrs['transposeB'] as boolean;
  const mm = (p: Tensor, q: Tensor, ta: boolean, tb: boolean) => tf.matMul(p, q, ta, tb);
  let da: () => Tensor;
  let db: () => Tensor;
  if (!tA && !tB) {
    da = () => mm(dy, b!, false, true);
    db = () => mm(a!, dy, true, false);
  } else if (!tA && tB) {
    da = () => mm(dy, b!, false, false);
    db = () => mm(dy, a!, true, false);
  } else if (tA && !tB) {
    da = () => mm(b!, dy, false, true);
    db = () => mm(a!, dy, false, false);
  } else {
    da = () => mm(b!, dy, true, true);
    db = () => mm(dy, a!, true, true);
  }
  return { a: () => reduceTo(da(), a!.shape), b: () => reduceTo(db(), b!.shape) };
});

// ---------------------------------------------------------------- batch norm (tf.batchNorm)
// Needs scale and offset given (tf.batchNorm(x, mean, variance, offset, scale)); tfjs cannot save a
// missing input for the backward pass. engine/ops.ts `batchNorm` always passes both.
reg('FusedBatchNorm', ['x', 'mean', 'variance', 'scale', 'offset'], [], (dy, [x, mean, variance, scale, offset], attrs) => {
  const eps = num(attrs['varianceEpsilon']);
  const inv = () => tf.rsqrt(tf.add(variance!, eps));
  return {
    x: () => tf.mul(dy, tf.mul(inv(), scale!)),
    mean: () => reduceTo(tf.neg(tf.mul(dy, tf.mul(inv(), scale!))), mean!.shape),
    variance: () => {
      const i = inv();
      return reduceTo(tf.mul(tf.mul(tf.mul(dy, scale!), tf.sub(x!, mean!)), tf.mul(tf.mul(tf.square(i), i), -0.5)), variance!.shape);
    },
    offset: () => reduceTo(dy, offset!.shape),
    scale: () => reduceTo(tf.mul(tf.mul(dy, tf.sub(x!, mean!)), inv()), scale!.shape),
  };
});

// ---------------------------------------------------------------- convolution and pooling
reg('Conv2D', ['x', 'filter'], [], (dy, [x, filter], attrs) => {
  const g = convGeometry(
    x!.shape,
    filter!.shape,
    attrs['strides'] as number[],
    attrs['dilations'] as number[],
    attrs['pad'] as ConvPad,
    attrs['dimRoundingMode'] as 'floor' | undefined,
    attrs['dataFormat'] as string,
  );
  return {
    x: () => conv2dInputGrad(dy as tf.Tensor4D, filter as tf.Tensor4D, x!.shape, g),
    filter: () => conv2dFilterGrad(x as tf.Tensor4D, dy as tf.Tensor4D, filter!.shape, g),
  };
});
// conv2dTranspose (= Conv2DBackpropInput): its gradients are a forward conv and a filter gradient.
reg('Conv2DBackpropInput', ['dy', 'filter'], [], (ddx, [dy, filter], attrs) => {
  const inputShape = attrs['inputShape'] as number[];
  const g = convGeometry(
    inputShape,
    filter!.shape,
    attrs['strides'] as number[],
    1,
    attrs['pad'] as ConvPad,
    attrs['dimRoundingMode'] as 'floor' | undefined,
    attrs['dataFormat'] as string,
  );
  return {
    dy: () =>
      tf.conv2d(ddx as tf.Tensor4D, filter as tf.Tensor4D, attrs['strides'] as [number, number], attrs['pad'] as 'same', 'NHWC', 1, attrs['dimRoundingMode'] as 'floor' | undefined),
    filter: () => conv2dFilterGrad(ddx as tf.Tensor4D, dy as tf.Tensor4D, filter!.shape, g),
  };
});
// Max-pool: from masks (pool.ts). Not the MaxPoolGrad kernel: it has no gradient of its own, and
// measured in tfjs-backend-wasm 4.22 its results are wrong for strides > 1 (2x2/2 'valid' included).
reg('MaxPool', ['x'], [true], (dy, [x, y], attrs) => ({
  x: () =>
    maxPoolGrad(
      dy as tf.Tensor4D,
      x as tf.Tensor4D,
      y as tf.Tensor4D,
      poolGeometry(x!.shape, attrs['filterSize'] as number[], attrs['strides'] as number[], attrs['pad'], attrs['dimRoundingMode'] as 'floor' | undefined),
    ),
}));
// Integer-factor nearest upsampling (used by the pooling gradients): its gradient is a sum-pool.
reg('ResizeNearestNeighbor', ['images'], [], (dy, [images], attrs) => ({
  images: () => {
    const [, h, w] = images!.shape;
    const [, oh, ow] = dy.shape;
    const fh = oh! / h!;
    const fw = ow! / w!;
    if (!Number.isInteger(fh) || !Number.isInteger(fw) || attrs['alignCorners'] || attrs['halfPixelCenters']) {
      throw new Error('engine/gradients.ts: gradient of resizeNearestNeighbor is supported for integer upscaling without alignCorners/halfPixelCenters only');
    }
    if (fh === 1 && fw === 1) return tf.clone(dy);
    return tf.mul(tf.avgPool(dy as tf.Tensor4D, [fh, fw], [fh, fw], 'valid'), fh * fw);
  },
}));
reg('AvgPool', ['x'], [], (dy, [x], attrs) => ({
  x: () =>
    avgPoolGrad(
      dy as tf.Tensor4D,
      poolGeometry(x!.shape, attrs['filterSize'] as number[], attrs['strides'] as number[], attrs['pad'], attrs['dimRoundingMode'] as 'floor' | undefined),
    ),
}));

/** Kernel names that have a project gradient. */
export const projectGradientKernels: readonly string[] = configs.map((c) => c.kernelName);

let registered = false;

/** Register (or re-register, replacing any other) the project's gradients. Idempotent unless `force`. */
export function registerProjectGradients(force = false): void {
  if (registered && !force) return;
  for (const c of configs) tf.registerGradient(c);
  registered = true;
}
