import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../rng.js';
import type { OnnxGraphBuilder } from '../onnx/builder.js';
import type { ExportContext } from '../onnx/context.js';
import type { Layer, Params } from './types.js';
import { uniformTensor } from './init.js';
import { expectRank, need } from './layers.js';

/**
 * LSTM cell parameters (gate order i, f, g, o along the 4·units axis, as PyTorch):
 * `weight_ih` [inputSize, 4·units], `weight_hh` [units, 4·units], `bias` [4·units].
 */
export interface LSTMCellParams {
  weight_ih: tf.Tensor;
  weight_hh: tf.Tensor;
  bias: tf.Tensor;
}

export interface LSTMState {
  h: tf.Tensor2D;
  c: tf.Tensor2D;
}

/**
 * One LSTM step on a batch: x [n, inputSize], state {h, c} [n, units] → new {h, c}.
 * z = x·W_ih + h·W_hh + b; i, f, o = σ(z_i, z_f, z_o); g = tanh(z_g); c' = f⊙c + i⊙g; h' = o⊙tanh(c').
 * Pure and differentiable (any order) in the parameters and inputs. Pass `xProj` = x·W_ih when it
 * was precomputed for a whole sequence.
 */
export function lstmCell(p: LSTMCellParams, x: tf.Tensor2D | null, state: LSTMState, xProj?: tf.Tensor2D): LSTMState {
  return tf.tidy(() => {
    const xw = xProj ?? tf.matMul(x as tf.Tensor2D, p.weight_ih as tf.Tensor2D);
    return lstmGates(tf.add(tf.add(xw, tf.matMul(state.h, p.weight_hh as tf.Tensor2D)), p.bias) as tf.Tensor2D, state.c) as unknown as tf.TensorContainerObject;
  }) as unknown as LSTMState;
}

/**
 * The gate part of {@link lstmCell}: from the preactivations z = x·W_ih + h·W_hh + b [n, 4·units]
 * and the previous cell state, the new {h, c}. For callers that compute z with fewer matrix products
 * (one product of [x, h] with stacked weights, inputs projected for a whole sequence).
 */
export function lstmGates(z: tf.Tensor2D, cPrev: tf.Tensor2D): LSTMState {
  return tf.tidy(() => {
    const [zi, zf, zg, zo] = tf.split(z, 4, 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    const c = tf.add(tf.mul(tf.sigmoid(zf), cPrev), tf.mul(tf.sigmoid(zi), tf.tanh(zg))) as tf.Tensor2D;
    const h = tf.mul(tf.sigmoid(zo), tf.tanh(c)) as tf.Tensor2D;
    return { h, c } as unknown as tf.TensorContainerObject;
  }) as unknown as LSTMState;
}

/** Zero initial state for a batch of `n`. */
export function lstmZeroState(n: number, units: number): LSTMState {
  return { h: tf.zeros([n, units]), c: tf.zeros([n, units]) };
}

/** Fresh LSTM cell parameters, PyTorch-style U(±1/√units); `forgetBias` is added to the forget-gate bias. */
export function initLSTMCell(rng: Rng, inputSize: number, units: number, forgetBias = 0): Params {
  const b = 1 / Math.sqrt(units);
  const weight_ih = uniformTensor(rng, [inputSize, 4 * units], -b, b);
  const weight_hh = uniformTensor(rng, [units, 4 * units], -b, b);
  const bias0 = rng.uniformArray(4 * units, -b, b);
  for (let j = units; j < 2 * units; j++) bias0[j] = bias0[j]! + forgetBias;
  return { weight_ih, weight_hh, bias: tf.tensor1d(bias0) };
}

/**
 * Emit one LSTM step as plain ONNX ops (MatMul/Add/Split/Sigmoid/Tanh/Mul) reading values `x`
 * [n, inputSize], `h`, `c` [n, units]; returns the names of the new h and c. For custom layers that
 * unroll a controller (e.g. a memory-augmented network). `weights` are initializer names of
 * `weight_ih`, `weight_hh`, `bias` (see {@link addLSTMCellInitializers}).
 */
export function lstmCellOnnx(g: OnnxGraphBuilder, weights: { weight_ih: string; weight_hh: string; bias: string }, units: number, x: string, h: string, c: string): { h: string; c: string } {
  const z = g.addNode('Add', [g.addNode('Add', [g.addNode('MatMul', [x, weights.weight_ih]), g.addNode('MatMul', [h, weights.weight_hh])]), weights.bias]);
  const split = g.int64([units, units, units, units], 'lstm_split');
  const [zi, zf, zg, zo] = g.addNodeMulti('Split', [z, split], 4, { axis: 1 }) as [string, string, string, string];
  const c2 = g.addNode('Add', [g.addNode('Mul', [g.addNode('Sigmoid', [zf]), c]), g.addNode('Mul', [g.addNode('Sigmoid', [zi]), g.addNode('Tanh', [zg])])]);
  const h2 = g.addNode('Mul', [g.addNode('Sigmoid', [zo]), g.addNode('Tanh', [c2])]);
  return { h: h2, c: c2 };
}

/** Add a cell's weights as initializers named `${prefix}.weight_ih` etc.; returns their names. */
export function addLSTMCellInitializers(g: OnnxGraphBuilder, prefix: string, p: Params): { weight_ih: string; weight_hh: string; bias: string } {
  const get = (k: string) => {
    const t = p[k];
    if (!t) throw new Error(`addLSTMCellInitializers: missing parameter '${prefix}.${k}'`);
    return t;
  };
  return {
    weight_ih: g.addInitializer(g.uniqueName(`${prefix}.weight_ih`), get('weight_ih')),
    weight_hh: g.addInitializer(g.uniqueName(`${prefix}.weight_hh`), get('weight_hh')),
    bias: g.addInitializer(g.uniqueName(`${prefix}.bias`), get('bias')),
  };
}

export interface LSTMOptions {
  name: string;
  units: number;
  /** return the whole sequence of hidden states [len, units] instead of the last one [units] */
  returnSequences?: boolean;
  /** added to the forget-gate bias at init (default 0, as PyTorch) */
  forgetBias?: number;
}

/**
 * LSTM over a sequence [len, features] (len may be dynamic, -1), zero initial state. Output: last
 * hidden state [units], or all hidden states [len, units] with `returnSequences`. Exported as one
 * ONNX `LSTM` node (gates reordered to ONNX's i, o, f, c).
 */
export class LSTM implements Layer {
  readonly kind = 'lstm';
  readonly name: string;
  readonly units: number;
  readonly returnSequences: boolean;
  readonly forgetBias: number;

  constructor(o: LSTMOptions) {
    if (typeof o.name !== 'string' || o.name.length === 0) throw new Error(`LSTM: option 'name' must be a non-empty string`);
    this.name = o.name;
    if (!Number.isInteger(o.units) || o.units <= 0) throw new Error(`LSTM '${o.name}': option 'units' must be a positive integer, got ${JSON.stringify(o.units)}`);
    this.units = o.units;
    this.returnSequences = o.returnSequences ?? false;
    this.forgetBias = o.forgetBias ?? 0;
  }

  private features(s: number[]): number {
    expectRank(this, s, [2], '[length, features]');
    if (s[1]! < 0) throw new Error(`lstm '${this.name}': the feature dimension must be static, got [${s}]`);
    return s[1]!;
  }

  outputShape(s: number[]): number[] {
    this.features(s);
    return this.returnSequences ? [s[0]!, this.units] : [this.units];
  }

  paramShapes(s: number[]): Record<string, number[]> {
    const f = this.features(s);
    return { weight_ih: [f, 4 * this.units], weight_hh: [this.units, 4 * this.units], bias: [4 * this.units] };
  }

  init(rng: Rng, s: number[]): Params {
    return initLSTMCell(rng, this.features(s), this.units, this.forgetBias);
  }

  apply(p: Params, x: tf.Tensor): tf.Tensor {
    if (x.rank !== 3) throw new Error(`lstm '${this.name}': expects a batch [n, length, features], got shape [${x.shape}]`);
    const cell: LSTMCellParams = { weight_ih: need(p, 'weight_ih', this), weight_hh: need(p, 'weight_hh', this), bias: need(p, 'bias', this) };
    return tf.tidy(() => {
      const [n, len, f] = x.shape as [number, number, number];
      if (len < 1) throw new Error(`lstm '${this.name}': empty sequence`);
      const proj = tf.reshape(tf.matMul(tf.reshape(x, [n * len, f]) as tf.Tensor2D, cell.weight_ih as tf.Tensor2D), [n, len, 4 * this.units]);
      const steps = tf.unstack(proj, 1) as tf.Tensor2D[];
      let st = lstmZeroState(n, this.units);
      const hs: tf.Tensor2D[] = [];
      for (const xp of steps) {
        st = lstmCell(cell, null, st, xp);
        if (this.returnSequences) hs.push(st.h);
      }
      return this.returnSequences ? tf.stack(hs, 1) : st.h;
    });
  }

  toOnnx(g: OnnxGraphBuilder, p: Params, input: string, ctx: ExportContext): string {
    const u = this.units;
    const x = ctx.channelsLast(input);
    const [W, R, B] = tf.tidy(() => {
      const reorder = (t: tf.Tensor) => {
        const [i, f, c, o] = tf.split(t, 4, t.rank - 1);
        return tf.concat([i!, o!, f!, c!], t.rank - 1);
      };
      const w = tf.expandDims(tf.transpose(reorder(need(p, 'weight_ih', this))), 0); // [1, 4u, f]
      const r = tf.expandDims(tf.transpose(reorder(need(p, 'weight_hh', this))), 0); // [1, 4u, u]
      const b = tf.expandDims(tf.concat([reorder(need(p, 'bias', this)), tf.zeros([4 * u])]), 0); // [1, 8u]
      return [w, r, b];
    });
    const wn = g.addInitializer(g.uniqueName(`${this.name}.W`), W!);
    const rn = g.addInitializer(g.uniqueName(`${this.name}.R`), R!);
    const bn = g.addInitializer(g.uniqueName(`${this.name}.B`), B!);
    tf.dispose([W!, R!, B!]);
    const xt = g.addNode('Transpose', [x], { perm: [1, 0, 2] }); // [len, n, f]
    const [y, yh] = g.addNodeMulti('LSTM', [xt, wn, rn, bn], 2, { hidden_size: u, direction: 'forward' }) as [string, string];
    ctx.layout = 'channelsLast';
    if (this.returnSequences) {
      const sq = g.addNode('Squeeze', [y, g.int64([1], `${this.name}.axes`)]); // [len, n, u]
      return g.addNode('Transpose', [sq], { perm: [1, 0, 2] }, { output: g.uniqueName(this.name) });
    }
    return g.addNode('Squeeze', [yh, g.int64([0], `${this.name}.axes`)], {}, { output: g.uniqueName(this.name) });
  }
}
