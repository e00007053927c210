import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';
import type { OnnxGraphBuilder } from '../onnx/builder.js';
import type { ExportContext } from '../onnx/context.js';
import type { ApplyContext, InitScheme, Layer, Params } from './types.js';
import { initWeightBias } from './init.js';
import { avgPool2d, conv1d, conv2d, maxPool2d } from '../engine/index.js';
import { meanAllButLast } from '../engine/util.js';

export type LayerPadding = 'same' | 'valid';

// ---------------------------------------------------------------------------------------------
// helpers shared by the layers (exported for custom layers)

/** `p[key]`, or a clear error naming the layer and the parameters it was given. */
export function need(p: Params | undefined, key: string, layer: Layer, what = 'parameter', hint = ''): tf.Tensor {
  const t = p?.[key];
  if (!t) {
    const have = Object.keys(p ?? {});
    throw new Error(`${layer.kind} '${layer.name}': missing ${what} '${layer.name}.${key}' (given: ${have.length ? have.map((k) => `${layer.name}.${k}`).join(', ') : 'none'})${hint ? `; ${hint}` : ''}`);
  }
  return t;
}

/** Throw unless `shape` (per example) has `rank` dimensions. */
export function expectRank(layer: Layer, shape: number[], ranks: number[], hint: string): void {
  if (!ranks.includes(shape.length)) {
    throw new Error(`${layer.kind} '${layer.name}': expects per-example input of rank ${ranks.join(' or ')} (${hint}), got shape [${shape}]`);
  }
}

function checkName(name: unknown, kind: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new Error(`${kind}: option 'name' must be a non-empty string`);
  return name;
}

function posInt(v: unknown, field: string, layer: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${layer}: option '${field}' must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function tuple(v: number | number[] | undefined, n: number, dflt: number, field: string, layer: string): number[] {
  const arr = v === undefined ? Array(n).fill(dflt) : typeof v === 'number' ? Array(n).fill(v) : v;
  if (arr.length !== n) throw new Error(`${layer}: option '${field}' must have ${n} entries, got [${arr}]`);
  arr.forEach((x) => posInt(x, field, layer));
  return arr as number[];
}

/** Output length of a window op along one axis (-1 stays dynamic). */
export function windowOut(inp: number, k: number, s: number, pad: LayerPadding, where: string): number {
  if (inp < 0) return -1;
  if (pad === 'same') return Math.ceil(inp / s);
  const o = Math.floor((inp - k) / s) + 1;
  if (o < 1) throw new Error(`${where}: window ${k} does not fit input size ${inp} with 'valid' padding`);
  return o;
}

/** tfjs/TF 'same' padding (extra at the end, = ONNX SAME_UPPER) as [before, after]. */
export function samePads(inp: number, k: number, s: number): [number, number] {
  const out = Math.ceil(inp / s);
  const total = Math.max((out - 1) * s + k - inp, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** ONNX padding attributes for a window op on the given spatial sizes. */
function onnxPadAttrs(spatial: number[], k: number[], s: number[], pad: LayerPadding): Record<string, number[] | string> {
  if (pad === 'valid') return { pads: Array(2 * spatial.length).fill(0) };
  if (spatial.some((d) => d < 0)) return { auto_pad: 'SAME_UPPER' };
  const pp = spatial.map((d, i) => samePads(d, k[i]!, s[i]!));
  return { pads: [...pp.map((x) => x[0]), ...pp.map((x) => x[1])] };
}

function prod(a: number[]): number {
  return a.reduce((x, y) => x * y, 1);
}

// ---------------------------------------------------------------------------------------------
// Dense

export interface DenseOptions {
  name: string;
  units: number;
  bias?: boolean;
  init?: InitScheme;
}

/** Fully connected layer `y = x·W + b` on the last axis; weight [in, units], bias [units]. */
export class Dense implements Layer {
  readonly kind = 'dense';
  readonly name: string;
  readonly units: number;
  readonly useBias: boolean;
  readonly initScheme: InitScheme;

  constructor(o: DenseOptions) {
    this.name = checkName(o.name, 'Dense');
    this.units = posInt(o.units, 'units', `Dense '${this.name}'`);
    this.useBias = o.bias ?? true;
    this.initScheme = o.init ?? 'pytorch';
  }

  private inFeatures(s: number[]): number {
    if (s.length < 1) throw new Error(`dense '${this.name}': needs input of rank ≥ 1 per example, got []`);
    const f = s[s.length - 1]!;
    if (f < 0) throw new Error(`dense '${this.name}': the input's last dimension must be static, got [${s}]`);
    return f;
  }

  outputShape(s: number[]): number[] {
    this.inFeatures(s);
    return [...s.slice(0, -1), this.units];
  }

  paramShapes(s: number[]): Record<string, number[]> {
    const f = this.inFeatures(s);
    return this.useBias ? { weight: [f, this.units], bias: [this.units] } : { weight: [f, this.units] };
  }

  init(rng: Rng, s: number[]): Params {
    const f = this.inFeatures(s);
    return initWeightBias(rng, this.initScheme, [f, this.units], f, this.units, this.useBias ? [this.units] : null);
  }

  apply(p: Params, x: tf.Tensor): tf.Tensor {
    const w = need(p, 'weight', this) as tf.Tensor2D;
    return tf.tidy(() => {
      let y: tf.Tensor;
      if (x.rank === 2) y = tf.matMul(x as tf.Tensor2D, w);
      else {
        const lead = x.shape.slice(0, -1);
        y = tf.reshape(tf.matMul(tf.reshape(x, [-1, x.shape[x.rank - 1]!]) as tf.Tensor2D, w), [...lead, this.units]);
      }
      return this.useBias ? tf.add(y, need(p, 'bias', this)) : y;
    });
  }

  toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string {
    const x = ctx.channelsLast(input);
    const w = g.addParam(`${this.name}.weight`, need(p, 'weight', this));
    const b = this.useBias ? g.addParam(`${this.name}.bias`, need(p, 'bias', this)) : null;
    if (ctx.rank === 2) return g.addNode('Gemm', b ? [x, w, b] : [x, w], {}, { output: g.uniqueName(this.name) });
    const y = g.addNode('MatMul', [x, w]);
    return b ? g.addNode('Add', [y, b], {}, { output: g.uniqueName(this.name) }) : y;
  }
}

// ---------------------------------------------------------------------------------------------
// Convolutions

export interface ConvOptions {
  name: string;
  filters: number;
  kernelSize: number | number[];
  strides?: number | number[];
  padding?: LayerPadding;
  bias?: boolean;
  init?: InitScheme;
}

abstract class ConvBase implements Layer {
  abstract readonly kind: string;
  readonly name: string;
  readonly filters: number;
  readonly kernel: number[];
  readonly strides: number[];
  readonly padding: LayerPadding;
  readonly useBias: boolean;
  readonly initScheme: InitScheme;

  constructor(
    o: ConvOptions,
    readonly dims: 1 | 2,
  ) {
    const kind = dims === 2 ? 'Conv2d' : 'Conv1d';
    this.name = checkName(o.name, kind);
    const where = `${kind} '${this.name}'`;
    this.filters = posInt(o.filters, 'filters', where);
    this.kernel = tuple(o.kernelSize, dims, 3, 'kernelSize', where);
    this.strides = tuple(o.strides, dims, 1, 'strides', where);
    this.padding = o.padding ?? 'same';
    if (this.padding !== 'same' && this.padding !== 'valid') throw new Error(`${where}: option 'padding' must be 'same' or 'valid', got ${JSON.stringify(o.padding)}`);
    this.useBias = o.bias ?? true;
    this.initScheme = o.init ?? 'pytorch';
  }

  protected inChannels(s: number[]): number {
    expectRank(this, s, [this.dims + 1], this.dims === 2 ? '[height, width, channels]' : '[length, channels]');
    const c = s[this.dims]!;
    if (c < 0) throw new Error(`${this.kind} '${this.name}': the channel dimension must be static, got [${s}]`);
    return c;
  }

  outputShape(s: number[]): number[] {
    this.inChannels(s);
    const sp = s.slice(0, this.dims).map((d, i) => windowOut(d, this.kernel[i]!, this.strides[i]!, this.padding, `${this.kind} '${this.name}'`));
    return [...sp, this.filters];
  }

  paramShapes(s: number[]): Record<string, number[]> {
    const c = this.inChannels(s);
    const w = [...this.kernel, c, this.filters];
    return this.useBias ? { weight: w, bias: [this.filters] } : { weight: w };
  }

  init(rng: Rng, s: number[]): Params {
    const c = this.inChannels(s);
    const k = prod(this.kernel);
    return initWeightBias(rng, this.initScheme, [...this.kernel, c, this.filters], c * k, this.filters * k, this.useBias ? [this.filters] : null);
  }

  protected abstract conv(x: tf.Tensor, w: tf.Tensor): tf.Tensor;

  apply(p: Params, x: tf.Tensor): tf.Tensor {
    if (x.rank !== this.dims + 2) throw new Error(`${this.kind} '${this.name}': expects a batch of rank ${this.dims + 2}, got shape [${x.shape}]`);
    const w = need(p, 'weight', this);
    return tf.tidy(() => {
      const y = this.conv(x, w);
      return this.useBias ? tf.add(y, need(p, 'bias', this)) : y;
    });
  }

  toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string {
    const spatial = ctx.shape.slice(0, this.dims);
    const x = ctx.channelsFirst(input);
    const w = g.addParam(`${this.name}.weight`, need(p, 'weight', this), { perm: this.dims === 2 ? [3, 2, 0, 1] : [2, 1, 0] });
    const ins = [x, w];
    if (this.useBias) ins.push(g.addParam(`${this.name}.bias`, need(p, 'bias', this)));
    return g.addNode(
      'Conv',
      ins,
      { kernel_shape: this.kernel, strides: this.strides, dilations: this.kernel.map(() => 1), group: 1, ...onnxPadAttrs(spatial, this.kernel, this.strides, this.padding) },
      { output: g.uniqueName(this.name) },
    );
  }
}

/** 2-D convolution on NHWC input; weight [kh, kw, inChannels, filters] (tfjs layout), bias [filters]. */
export class Conv2d extends ConvBase {
  readonly kind = 'conv2d';
  constructor(o: ConvOptions) {
    super(o, 2);
  }
  protected conv(x: tf.Tensor, w: tf.Tensor): tf.Tensor {
    return conv2d(x as tf.Tensor4D, w as tf.Tensor4D, this.strides as [number, number], this.padding);
  }
}

/** 1-D convolution over time on [n, length, channels]; weight [k, inChannels, filters], bias [filters]. */
export class Conv1d extends ConvBase {
  readonly kind = 'conv1d';
  constructor(o: ConvOptions) {
    super(o, 1);
  }
  protected conv(x: tf.Tensor, w: tf.Tensor): tf.Tensor {
    return conv1d(x as tf.Tensor3D, w as tf.Tensor3D, this.strides[0]!, this.padding);
  }
}

// ---------------------------------------------------------------------------------------------
// Batch normalisation

export interface BatchNormOptions {
  name: string;
  epsilon?: number;
  /** weight of the new batch statistic in the running average (PyTorch convention, default 0.1) */
  momentum?: number;
  /** keep running statistics for eval (default true); false = always batch statistics (MAML) */
  trackRunningStats?: boolean;
  /** learnable scale/shift `weight`/`bias` (default true) */
  affine?: boolean;
}

/**
 * Batch normalisation over the last (channel) axis of any-rank input. Training mode always uses
 * the batch statistics (biased variance), as MAML does; eval mode uses the running statistics from
 * `ctx.state` when `trackRunningStats`, else batch statistics. In training mode the new running
 * statistics (momentum update, unbiased variance, as PyTorch) are written to `ctx.updates`.
 * Params `weight` (γ, ones) and `bias` (β, zeros); state `running_mean` (zeros), `running_var` (ones).
 */
export class BatchNorm implements Layer {
  readonly kind = 'batchnorm';
  readonly name: string;
  readonly epsilon: number;
  readonly momentum: number;
  readonly trackRunningStats: boolean;
  readonly affine: boolean;

  constructor(o: BatchNormOptions) {
    this.name = checkName(o.name, 'BatchNorm');
    this.epsilon = o.epsilon ?? 1e-5;
    this.momentum = o.momentum ?? 0.1;
    this.trackRunningStats = o.trackRunningStats ?? true;
    this.affine = o.affine ?? true;
    if (!(this.epsilon > 0)) throw new Error(`BatchNorm '${this.name}': option 'epsilon' must be > 0`);
    if (!(this.momentum >= 0 && this.momentum <= 1)) throw new Error(`BatchNorm '${this.name}': option 'momentum' must be in [0, 1]`);
  }

  private channels(s: number[]): number {
    if (s.length < 1) throw new Error(`batchnorm '${this.name}': needs per-example input of rank ≥ 1`);
    const c = s[s.length - 1]!;
    if (c < 0) throw new Error(`batchnorm '${this.name}': the channel dimension must be static, got [${s}]`);
    return c;
  }

  outputShape(s: number[]): number[] {
    this.channels(s);
    return [...s];
  }

  paramShapes(s: number[]): Record<string, number[]> {
    const c = this.channels(s);
    return this.affine ? { weight: [c], bias: [c] } : {};
  }

  init(_rng: Rng, s: number[]): Params {
    const c = this.channels(s);
    return this.affine ? { weight: tf.ones([c]), bias: tf.zeros([c]) } : {};
  }

  initState(s: number[]): Params {
    const c = this.channels(s);
    return this.trackRunningStats ? { running_mean: tf.zeros([c]), running_var: tf.ones([c]) } : {};
  }

  /** whether this pass uses batch statistics */
  usesBatchStats(ctx: { training?: boolean; batchStats?: boolean }): boolean {
    return !this.trackRunningStats || !!ctx.training || !!ctx.batchStats;
  }

  apply(p: Params, x: tf.Tensor, ctx: ApplyContext): tf.Tensor {
    const gamma = this.affine ? need(p, 'weight', this) : null;
    const beta = this.affine ? need(p, 'bias', this) : null;
    if (this.usesBatchStats(ctx)) {
      const count = x.size / x.shape[x.rank - 1]!;
      const y = tf.tidy(() => {
        // per-channel statistics as pooled sums (engine/util.ts: tf.mean over leading axes is very
        // slow on wasm); the per-channel factor γ·(var + ε)^-½ is formed on [C] before it touches the
        // big map, so the map sees one sub, one square, one mul and one add
        const mean = meanAllButLast(x);
        const d = tf.sub(x, mean);
        const variance = meanAllButLast(tf.square(d));
        // (var + ε)^-½ via pow, whose gradient is written on its inputs (differentiable again)
        const inv = tf.pow(tf.add(variance, this.epsilon), -0.5);
        let out = tf.mul(d, gamma ? tf.mul(inv, gamma) : inv);
        if (beta) out = tf.add(out, beta);
        if (ctx.training && this.trackRunningStats && ctx.updates) {
          const rm = need(ctx.state, 'running_mean', this, 'state buffer');
          const rv = need(ctx.state, 'running_var', this, 'state buffer');
          const m = this.momentum;
          const unbiased = count > 1 ? tf.mul(variance, count / (count - 1)) : variance;
          ctx.updates.running_mean = tf.keep(tf.add(tf.mul(rm, 1 - m), tf.mul(mean, m)));
          ctx.updates.running_var = tf.keep(tf.add(tf.mul(rv, 1 - m), tf.mul(unbiased, m)));
        }
        return out;
      });
      return y;
    }
    const rm = need(ctx.state, 'running_mean', this, 'state buffer', 'eval mode uses running statistics: pass ctx.state, or batchStats: true');
    const rv = need(ctx.state, 'running_var', this, 'state buffer');
    return tf.tidy(() => {
      // x·s + (β − μ·s) with s = γ·(var + ε)^-½ formed on [C]: two ops on the big map instead of four
      const inv = tf.pow(tf.add(rv, this.epsilon), -0.5);
      const scale = gamma ? tf.mul(inv, gamma) : inv;
      const shift = tf.neg(tf.mul(rm, scale));
      return tf.add(tf.mul(x, scale), beta ? tf.add(shift, beta) : shift);
    });
  }

  toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string {
    const c = this.channels(ctx.shape);
    const x = ctx.channelsFirst(input);
    const out = g.uniqueName(this.name);
    if (this.usesBatchStats({ batchStats: ctx.batchStats })) {
      // y = (x - mean) * γ / sqrt(var + ε) + β with mean/var over every axis but the channel axis
      const r = ctx.rank;
      const axes = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2)];
      const bshape = [c, ...Array(r - 2).fill(1)];
      const mean = g.addNode('ReduceMean', [x], { axes, keepdims: 1 });
      const d = g.addNode('Sub', [x, mean]);
      const variance = g.addNode('ReduceMean', [g.addNode('Mul', [d, d])], { axes, keepdims: 1 });
      g.noteBatchStats(this.name, mean, variance, ctx.shape.slice(0, -1).reduce((a, b) => a * b, 1));
      const std = g.addNode('Sqrt', [g.addNode('Add', [variance, g.float(this.epsilon, [], `${this.name}.epsilon`)])]);
      if (!this.affine) return g.addNode('Div', [d, std], {}, { output: out });
      const gam = g.addParam(`${this.name}.weight`, need(p, 'weight', this), { shape: bshape });
      const bet = g.addParam(`${this.name}.bias`, need(p, 'bias', this), { shape: bshape });
      return g.addNode('Add', [g.addNode('Mul', [d, g.addNode('Div', [gam, std])]), bet], {}, { output: out });
    }
    const st = ctx.state;
    const rm = need(st, 'running_mean', this, 'state buffer', 'pass opts.state to exportOnnx, or batchStats: true');
    const rv = need(st, 'running_var', this, 'state buffer');
    const gam = this.affine ? need(p, 'weight', this) : null;
    const bet = this.affine ? need(p, 'bias', this) : null;
    const scale = g.addInitializer(g.uniqueName(`${this.name}.weight`), gam ?? { data: new Float32Array(c).fill(1), shape: [c] });
    const shift = g.addInitializer(g.uniqueName(`${this.name}.bias`), bet ?? { data: new Float32Array(c), shape: [c] });
    const m = g.addInitializer(g.uniqueName(`${this.name}.running_mean`), rm);
    const v = g.addInitializer(g.uniqueName(`${this.name}.running_var`), rv);
    return g.addNode('BatchNormalization', [x, scale, shift, m, v], { epsilon: this.epsilon, momentum: 1 - this.momentum }, { output: out });
  }
}

// ---------------------------------------------------------------------------------------------
// Activations and other parameter-free layers

abstract class Stateless implements Layer {
  abstract readonly kind: string;
  readonly name: string;
  constructor(name: string, kind: string) {
    this.name = checkName(name, kind);
  }
  outputShape(s: number[]): number[] {
    return [...s];
  }
  paramShapes(): Record<string, number[]> {
    return {};
  }
  init(): Params {
    return {};
  }
  abstract apply(p: Params, x: tf.Tensor, ctx: ApplyContext): tf.Tensor;
  abstract toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string;
}

export class ReLU extends Stateless {
  readonly kind = 'relu';
  constructor(o: { name: string }) {
    super(o.name, 'ReLU');
  }
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    return tf.relu(x);
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string): string {
    return g.addNode('Relu', [input], {}, { output: g.uniqueName(this.name) });
  }
}

export class LeakyReLU extends Stateless {
  readonly kind = 'leakyrelu';
  readonly alpha: number;
  /** alpha defaults to 0.01 (PyTorch) */
  constructor(o: { name: string; alpha?: number }) {
    super(o.name, 'LeakyReLU');
    this.alpha = o.alpha ?? 0.01;
  }
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    return tf.leakyRelu(x, this.alpha);
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string): string {
    return g.addNode('LeakyRelu', [input], { alpha: this.alpha }, { output: g.uniqueName(this.name) });
  }
}

export class Sigmoid extends Stateless {
  readonly kind = 'sigmoid';
  constructor(o: { name: string }) {
    super(o.name, 'Sigmoid');
  }
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    return tf.sigmoid(x);
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string): string {
    return g.addNode('Sigmoid', [input], {}, { output: g.uniqueName(this.name) });
  }
}

export class Tanh extends Stateless {
  readonly kind = 'tanh';
  constructor(o: { name: string }) {
    super(o.name, 'Tanh');
  }
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    return tf.tanh(x);
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string): string {
    return g.addNode('Tanh', [input], {}, { output: g.uniqueName(this.name) });
  }
}

export interface PoolOptions {
  name: string;
  /** window (default 2); a number or one entry per spatial axis */
  poolSize?: number | number[];
  /** default: poolSize */
  strides?: number | number[];
  padding?: LayerPadding;
}

abstract class PoolBase extends Stateless {
  readonly poolSize: number | number[];
  readonly stridesOpt: number | number[] | undefined;
  readonly padding: LayerPadding;
  constructor(o: PoolOptions, kind: string) {
    super(o.name, kind);
    this.poolSize = o.poolSize ?? 2;
    this.stridesOpt = o.strides;
    this.padding = o.padding ?? 'valid';
    if (this.padding !== 'same' && this.padding !== 'valid') throw new Error(`${kind} '${this.name}': option 'padding' must be 'same' or 'valid'`);
    tuple(this.poolSize, typeof this.poolSize === 'number' ? 1 : this.poolSize.length, 2, 'poolSize', `${kind} '${this.name}'`);
  }
  /** spatial dims (1 for [len, c], 2 for [h, w, c]) */
  protected dimsOf(s: number[]): 1 | 2 {
    expectRank(this, s, [2, 3], '[length, channels] or [height, width, channels]');
    return s.length === 3 ? 2 : 1;
  }
  protected win(dims: number): { k: number[]; s: number[] } {
    const where = `${this.kind} '${this.name}'`;
    const k = tuple(this.poolSize, dims, 2, 'poolSize', where);
    const s = this.stridesOpt === undefined ? k : tuple(this.stridesOpt, dims, 1, 'strides', where);
    return { k, s };
  }
  override outputShape(sh: number[]): number[] {
    const dims = this.dimsOf(sh);
    const { k, s } = this.win(dims);
    return [...sh.slice(0, dims).map((d, i) => windowOut(d, k[i]!, s[i]!, this.padding, `${this.kind} '${this.name}'`)), sh[dims]!];
  }
  protected abstract pool2d(x: tf.Tensor4D, k: [number, number], s: [number, number]): tf.Tensor4D;
  protected abstract onnxOp: string;
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    if (x.rank !== 3 && x.rank !== 4) throw new Error(`${this.kind} '${this.name}': expects a batch of rank 3 or 4, got shape [${x.shape}]`);
    const { k, s } = this.win(x.rank - 2);
    if (x.rank === 4) return this.pool2d(x as tf.Tensor4D, k as [number, number], s as [number, number]);
    return tf.tidy(() => {
      const [n, l, c] = x.shape;
      const y = this.pool2d(tf.reshape(x, [n!, 1, l!, c!]) as tf.Tensor4D, [1, k[0]!], [1, s[0]!]);
      return tf.reshape(y, [n!, y.shape[2], c!]);
    });
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string, ctx: ExportContext): string {
    const dims = this.dimsOf(ctx.shape);
    const { k, s } = this.win(dims);
    const x = ctx.channelsFirst(input);
    return g.addNode(this.onnxOp, [x], { kernel_shape: k, strides: s, ...onnxPadAttrs(ctx.shape.slice(0, dims), k, s, this.padding) }, { output: g.uniqueName(this.name) });
  }
}

/** Max pooling over the spatial axes of [h, w, c] or [len, c] input (default window 2, stride = window, 'valid'). */
export class MaxPool extends PoolBase {
  readonly kind = 'maxpool';
  protected readonly onnxOp = 'MaxPool';
  constructor(o: PoolOptions) {
    super(o, 'MaxPool');
  }
  protected pool2d(x: tf.Tensor4D, k: [number, number], s: [number, number]): tf.Tensor4D {
    return maxPool2d(x, k, s, this.padding);
  }
}

/** Average pooling (padding excluded from the average, as tfjs and ONNX count_include_pad=0). */
export class AvgPool extends PoolBase {
  readonly kind = 'avgpool';
  protected readonly onnxOp = 'AveragePool';
  constructor(o: PoolOptions) {
    super(o, 'AvgPool');
  }
  protected pool2d(x: tf.Tensor4D, k: [number, number], s: [number, number]): tf.Tensor4D {
    return avgPool2d(x, k, s, this.padding);
  }
}

/** Mean over all spatial/time axes: [h, w, c] or [len, c] → [c]. Works for any (dynamic) length. */
export class GlobalAvgPool extends Stateless {
  readonly kind = 'globalavgpool';
  constructor(o: { name: string }) {
    super(o.name, 'GlobalAvgPool');
  }
  override outputShape(s: number[]): number[] {
    if (s.length < 2) throw new Error(`globalavgpool '${this.name}': expects per-example input of rank ≥ 2 ([..., channels]), got [${s}]`);
    return [s[s.length - 1]!];
  }
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    if (x.rank < 3) throw new Error(`globalavgpool '${this.name}': expects a batch of rank ≥ 3, got shape [${x.shape}]`);
    return tf.mean(x, Array.from({ length: x.rank - 2 }, (_, i) => i + 1));
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string, ctx: ExportContext): string {
    const r = ctx.rank;
    const axes = ctx.layout === 'channelsFirst' ? Array.from({ length: r - 2 }, (_, i) => i + 2) : Array.from({ length: r - 2 }, (_, i) => i + 1);
    const out = g.addNode('ReduceMean', [input], { axes, keepdims: 0 }, { output: g.uniqueName(this.name) });
    ctx.layout = 'channelsLast';
    return out;
  }
}

/** Flatten each example in tfjs (channels-last, row-major) order: [h, w, c] → [h·w·c]. */
export class Flatten extends Stateless {
  readonly kind = 'flatten';
  constructor(o: { name: string }) {
    super(o.name, 'Flatten');
  }
  override outputShape(s: number[]): number[] {
    if (s.some((d) => d < 0)) throw new Error(`flatten '${this.name}': needs a static per-example shape, got [${s}] (use GlobalAvgPool for variable lengths)`);
    return [prod(s)];
  }
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    return tf.reshape(x, [x.shape[0]!, -1]);
  }
  toOnnx(g: OnnxGraphBuilder, _p: Params, input: string, ctx: ExportContext): string {
    const x = ctx.channelsLast(input);
    return g.addNode('Flatten', [x], { axis: 1 }, { output: g.uniqueName(this.name) });
  }
}

/** Inverted dropout: zeroes a `rate` fraction in training (mask drawn from ctx.rng), identity in eval and in ONNX. */
export class Dropout extends Stateless {
  readonly kind = 'dropout';
  readonly rate: number;
  constructor(o: { name: string; rate: number }) {
    super(o.name, 'Dropout');
    if (typeof o.rate !== 'number' || !(o.rate >= 0 && o.rate < 1)) throw new Error(`Dropout '${this.name}': option 'rate' must be in [0, 1), got ${JSON.stringify(o.rate)}`);
    this.rate = o.rate;
  }
  apply(_p: Params, x: tf.Tensor, ctx: ApplyContext): tf.Tensor {
    if (!ctx.training || this.rate === 0) return x;
    if (!ctx.rng) throw new Error(`dropout '${this.name}': training mode needs ctx.rng (seeded Rng) to draw the mask`);
    const u = ctx.rng.uniformArray(x.size);
    const keep = 1 / (1 - this.rate);
    const mask = new Float32Array(x.size);
    for (let i = 0; i < u.length; i++) mask[i] = u[i]! >= this.rate ? keep : 0;
    return tf.tidy(() => tf.mul(x, tf.tensor(mask, x.shape, 'float32')));
  }
  toOnnx(_g: OnnxGraphBuilder, _p: Params, input: string): string {
    return input;
  }
}
