/**
 * Recurrent sequence models for the Santoro protocol: at step t the input is (x_t, one-hot y_{t-1})
 * and the output is logits for y_t. `MannModel` = LSTM controller + external memory with LRUA writes
 * and cosine content reads (Santoro et al. 2016); `LstmModel` = the plain LSTM baseline.
 * A model is a pure function of (params, state, inputs): the learners own the parameters, and the
 * ONNX exporter (onnx-export.ts) rebuilds exactly this step from the same parameter names.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '@metalearn/core';
import { Dense, initLSTMCell, lstmGates, type Params } from './core-nn.js';
import { contentWeights, leastUsed, lruaWriteWeights, readMemory, updateUsage, writeMemory } from './addressing.js';

export type SeqState = Record<string, tf.Tensor>;

export interface StepOut {
  state: SeqState;
  logits: tf.Tensor2D;
}

export interface SequenceModel {
  readonly kind: 'mann' | 'lstm';
  /** flattened example size D */
  readonly inputSize: number;
  /** number of output classes C (one-hot label width) */
  readonly classes: number;
  /** state tensor names and their shapes without the batch dimension */
  readonly stateShapes: Record<string, number[]>;
  init(rng: Rng): Params;
  initialState(batch: number): SeqState;
  /**
   * One time step. `prep` (from {@link prepare} for the whole sequence, with this step's projection)
   * saves the per-step work that does not depend on the state; without it the step prepares itself.
   */
  step(params: Params, state: SeqState, x: tf.Tensor2D, yPrev: tf.Tensor2D, prep?: StepPrep): StepOut;
  /** The state-independent work of whole sequences (x [B, T, D], yPrev [B, T, C]) at once. */
  prepare(params: Params, x: tf.Tensor3D, yPrev: tf.Tensor3D): SequencePrep;
}

/**
 * What a step needs that does not depend on the recurrent state, computed once per sequence: the
 * controller's input projection [x_t, y_{t-1}]·W_ih + b for all T steps in one matrix product (and
 * no gradient with respect to the inputs), and weights stacked so that each step makes one product
 * for the recurrence and one for all head outputs instead of one per layer. The same sums as the
 * layer-by-layer step (and its ONNX graph), regrouped.
 */
export interface SequencePrep {
  /** T tensors [B, 4H] */
  xProj: tf.Tensor2D[];
  /** stacked weights (`rec`: recurrent rows; MANN `heads`, `headsBias`) */
  w: Params;
}

export interface StepPrep {
  /** this step's input projection [B, 4H] */
  xProj: tf.Tensor2D;
  w: Params;
}

/** The prep of step t of a sequence. */
export function stepPrep(p: SequencePrep, t: number): StepPrep {
  const xProj = p.xProj[t];
  if (!xProj) throw new RangeError(`stepPrep: step ${t} outside the prepared ${p.xProj.length}`);
  return { xProj, w: p.w };
}

export interface MannOptions {
  controllerSize: number;
  memorySlots: number;
  memoryWidth: number;
  readHeads: number;
  /** usage decay γ */
  gamma: number;
  /** learned key strength β = 1 + softplus(·) on the cosine similarities (NTM-style sharpening) */
  keyStrength: boolean;
  /**
   * What a head writes: `add` (default) a separate vector a_t = tanh(W_a h_t), as in the NTM and the
   * public reproductions of the paper; `key` the read key k_t itself (the paper's eq. 7 read
   * literally). With `key` the slot written at step t holds exactly the key read at step t, so the
   * post-write read is drawn to it and returns the current input instead of what memory held.
   */
  writeVector?: 'add' | 'key';
  /**
   * Initial key strength β0 > 1 (with `keyStrength`): the strength layer's bias starts at
   * softplus⁻¹(β0 − 1), so reads start sharp instead of nearly uniform over the slots. Unset or 0:
   * the layer's own initialisation (β ≈ 1.7).
   */
  keyStrengthInit?: number;
}

/** Initial memory value (a small constant keeps cosine similarity defined on empty slots). */
export const MEMORY_INIT = 1e-6;
/** Initial usage of slot i is i·USAGE_RAMP: deterministic tie-breaking for the first LRU writes. */
export const USAGE_RAMP = 1e-6;

/** Local view of model-level params `${prefix}.${local}` (the core Layer convention). */
export function sub(p: Params, prefix: string): Params {
  const out: Params = {};
  const pre = `${prefix}.`;
  for (const [k, v] of Object.entries(p)) if (k.startsWith(pre)) out[k.slice(pre.length)] = v;
  return out;
}

function prefixed(prefix: string, p: Params): Params {
  const out: Params = {};
  for (const [k, v] of Object.entries(p)) out[`${prefix}.${k}`] = v;
  return out;
}

function ctrlParams(p: Params): { weight_ih: tf.Tensor; weight_hh: tf.Tensor; bias: tf.Tensor } {
  const q = sub(p, 'ctrl');
  if (!q.weight_ih || !q.weight_hh || !q.bias) throw new Error(`controller parameters ctrl.weight_ih/weight_hh/bias missing`);
  return { weight_ih: q.weight_ih, weight_hh: q.weight_hh, bias: q.bias };
}

/**
 * Controller input projection of whole sequences: [x, yPrev] [B·T, D + C] times the first D + C rows
 * of ctrl.weight_ih, plus ctrl.bias, split into T steps; and the recurrent weights `rec`: the
 * remaining rows of weight_ih (the step's extra inputs, MANN's reads) stacked over weight_hh.
 */
function prepareController(p: Params, x: tf.Tensor3D, yPrev: tf.Tensor3D): SequencePrep {
  const [B, T, D] = x.shape;
  const C = yPrev.shape[2];
  const w = ctrlParams(p);
  const rowsIn = w.weight_ih.shape[0]!;
  if (rowsIn < D + C) throw new Error(`controller weight_ih has ${rowsIn} rows, the inputs need ${D + C}`);
  const xy = tf.reshape(tf.concat([x, yPrev], 2), [B * T, D + C]) as tf.Tensor2D;
  const top = rowsIn === D + C ? w.weight_ih : tf.slice(w.weight_ih, [0, 0], [D + C, -1]);
  const proj = tf.reshape(tf.add(tf.matMul(xy, top as tf.Tensor2D), w.bias), [B, T, -1]);
  const rec = rowsIn === D + C ? w.weight_hh : tf.concat([tf.slice(w.weight_ih, [D + C, 0], [-1, -1]), w.weight_hh], 0);
  return { xProj: tf.unstack(proj, 1) as tf.Tensor2D[], w: { rec } };
}

/** One controller step from its prep: z = xProj + [extra, h]·rec (one product), then the gates. */
function ctrlStep(prep: StepPrep, extra: tf.Tensor2D | null, s: SeqState): { h: tf.Tensor2D; c: tf.Tensor2D } {
  const h = s.h as tf.Tensor2D;
  const inp = extra ? tf.concat([extra, h], 1) : h;
  return lstmGates(tf.add(prep.xProj, tf.matMul(inp, prep.w.rec as tf.Tensor2D)) as tf.Tensor2D, s.c as tf.Tensor2D);
}

/** A single step's prep (batch of one time step). */
function prepareOne(model: SequenceModel, p: Params, x: tf.Tensor2D, yPrev: tf.Tensor2D): StepPrep {
  return stepPrep(model.prepare(p, tf.expandDims(x, 1) as tf.Tensor3D, tf.expandDims(yPrev, 1) as tf.Tensor3D), 0);
}

export class MannModel implements SequenceModel {
  readonly kind = 'mann' as const;
  readonly stateShapes: Record<string, number[]>;
  readonly ctrlIn: number;
  readonly key: Dense;
  readonly alpha: Dense;
  readonly beta: Dense;
  readonly add: Dense;
  readonly out: Dense;

  constructor(readonly inputSize: number, readonly classes: number, readonly opt: MannOptions) {
    const { controllerSize: H, memorySlots: N, memoryWidth: M, readHeads: R } = opt;
    if (R > N) throw new Error(`MANN: readHeads (${R}) must not exceed memorySlots (${N})`);
    this.ctrlIn = inputSize + classes + R * M;
    this.key = new Dense({ name: 'key', units: R * M });
    this.alpha = new Dense({ name: 'alpha', units: R });
    this.beta = new Dense({ name: 'beta', units: R });
    this.add = new Dense({ name: 'add', units: R * M });
    this.out = new Dense({ name: 'out', units: classes });
    this.stateShapes = { h: [H], c: [H], memory: [N, M], usage: [N], read_w: [R, N], reads: [R * M] };
  }

  init(rng: Rng): Params {
    const { controllerSize: H, memoryWidth: M, readHeads: R } = this.opt;
    return {
      ...prefixed('ctrl', initLSTMCell(rng.fork('ctrl'), this.ctrlIn, H, 1)),
      ...prefixed('key', this.key.init(rng.fork('key'), [H])),
      ...prefixed('alpha', this.alpha.init(rng.fork('alpha'), [H])),
      ...(this.opt.keyStrength ? prefixed('beta', this.initBeta(rng.fork('beta'), H)) : {}),
      ...(this.writesAdd ? prefixed('add', this.add.init(rng.fork('add'), [H])) : {}),
      ...prefixed('out', this.out.init(rng.fork('out'), [H + R * M])),
    };
  }

  private initBeta(rng: Rng, H: number): Params {
    const p = this.beta.init(rng, [H]);
    const b0 = this.opt.keyStrengthInit ?? 0;
    if (b0 === 0) return p;
    if (!(b0 > 1)) throw new Error(`MANN: keyStrengthInit must be > 1 (or 0 for the layer's own init), got ${b0}`);
    p.bias!.dispose();
    // softplus⁻¹(y) = y + log(1 − e^(−y)), stable for large y
    const y = b0 - 1;
    return { ...p, bias: tf.fill([this.opt.readHeads], y + Math.log(-Math.expm1(-y))) };
  }

  /** whether heads write a separate add vector (`writeVector: 'add'`, the default) */
  get writesAdd(): boolean {
    return (this.opt.writeVector ?? 'add') === 'add';
  }

  initialState(batch: number): SeqState {
    const { controllerSize: H, memorySlots: N, memoryWidth: M, readHeads: R } = this.opt;
    const ramp = new Float32Array(batch * N);
    for (let b = 0; b < batch; b++) for (let i = 0; i < N; i++) ramp[b * N + i] = i * USAGE_RAMP;
    return {
      h: tf.zeros([batch, H]),
      c: tf.zeros([batch, H]),
      memory: tf.fill([batch, N, M], MEMORY_INIT),
      usage: tf.tensor2d(ramp, [batch, N]),
      read_w: tf.zeros([batch, R, N]),
      reads: tf.zeros([batch, R * M]),
    };
  }

  /** Controller prep, plus the head layers (key, alpha, beta, add) stacked into one product. */
  prepare(p: Params, x: tf.Tensor3D, yPrev: tf.Tensor3D): SequencePrep {
    const prep = prepareController(p, x, yPrev);
    const heads = this.headLayers().map((l) => sub(p, l.name));
    for (const [i, q] of heads.entries()) if (!q.weight || !q.bias) throw new Error(`MANN: parameters ${this.headLayers()[i]!.name}.weight/bias missing`);
    prep.w.heads = tf.concat(heads.map((q) => q.weight!), 1);
    prep.w.headsBias = tf.concat(heads.map((q) => q.bias!), 0);
    return prep;
  }

  /** The layers reading the controller output h, in the order of their columns in `heads`. */
  private headLayers(): Dense[] {
    return [this.key, this.alpha, ...(this.opt.keyStrength ? [this.beta] : []), ...(this.writesAdd ? [this.add] : [])];
  }

  step(p: Params, s: SeqState, x: tf.Tensor2D, yPrev: tf.Tensor2D, prep?: StepPrep): StepOut {
    const { memoryWidth: M, readHeads: R, gamma } = this.opt;
    const B = x.shape[0];
    const pr = prep ?? prepareOne(this, p, x, yPrev);
    const { h, c } = ctrlStep(pr, s.reads as tf.Tensor2D, s);
    // all head outputs in one product: [keys R·M | alpha R | beta R | add R·M]
    const hd = tf.add(tf.matMul(h, pr.w.heads as tf.Tensor2D), pr.w.headsBias!) as tf.Tensor2D;
    let col = 0;
    const take = (n: number) => tf.slice(hd, [0, (col += n) - n], [-1, n]) as tf.Tensor2D;
    const keys = tf.reshape(tf.tanh(take(R * M)), [B, R, M]) as tf.Tensor3D;
    const alphaLogit = take(R);
    const strength = this.opt.keyStrength ? (tf.add(1, tf.softplus(take(R))) as tf.Tensor2D) : undefined;
    const prevUsage = s.usage as tf.Tensor2D;
    const lu = leastUsed(prevUsage, R); // [B,R,N]
    const writeW = lruaWriteWeights(alphaLogit, s.read_w as tf.Tensor3D, lu);
    const erase = tf.reshape(tf.slice(lu, [0, 0, 0], [-1, 1, -1]), [B, -1]) as tf.Tensor2D;
    const values = this.writesAdd ? (tf.reshape(tf.tanh(take(R * M)), [B, R, M]) as tf.Tensor3D) : keys;
    const memory = writeMemory(s.memory as tf.Tensor3D, erase, writeW, values);
    const readW = contentWeights(keys, memory, strength);
    const reads = tf.reshape(readMemory(readW, memory), [B, R * M]) as tf.Tensor2D;
    const usage = updateUsage(prevUsage, readW, writeW, gamma);
    const logits = this.out.apply(sub(p, 'out'), tf.concat([h, reads], 1)) as tf.Tensor2D;
    return { state: { h, c, memory, usage, read_w: readW, reads }, logits };
  }
}

export interface LstmOptions {
  controllerSize: number;
}

export class LstmModel implements SequenceModel {
  readonly kind = 'lstm' as const;
  readonly stateShapes: Record<string, number[]>;
  readonly out: Dense;
  constructor(readonly inputSize: number, readonly classes: number, readonly opt: LstmOptions) {
    this.out = new Dense({ name: 'out', units: classes });
    this.stateShapes = { h: [opt.controllerSize], c: [opt.controllerSize] };
  }
  get ctrlIn(): number {
    return this.inputSize + this.classes;
  }
  init(rng: Rng): Params {
    const H = this.opt.controllerSize;
    return { ...prefixed('ctrl', initLSTMCell(rng.fork('ctrl'), this.ctrlIn, H, 1)), ...prefixed('out', this.out.init(rng.fork('out'), [H])) };
  }
  initialState(batch: number): SeqState {
    return { h: tf.zeros([batch, this.opt.controllerSize]), c: tf.zeros([batch, this.opt.controllerSize]) };
  }
  prepare(p: Params, x: tf.Tensor3D, yPrev: tf.Tensor3D): SequencePrep {
    return prepareController(p, x, yPrev);
  }
  step(p: Params, s: SeqState, x: tf.Tensor2D, yPrev: tf.Tensor2D, prep?: StepPrep): StepOut {
    const { h, c } = ctrlStep(prep ?? prepareOne(this, p, x, yPrev), null, s);
    return { state: { h, c }, logits: this.out.apply(sub(p, 'out'), h) as tf.Tensor2D };
  }
}
