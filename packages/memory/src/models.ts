/**
 * Recurrent sequence models for the Santoro protocol: at step t the input is (x_t, one-hot y_{t-1})
 * and the output is logits for y_t. `MannModel` = LSTM controller + external memory with LRUA writes
 * and cosine content reads (Santoro et al. 2016); `LstmModel` = the plain LSTM baseline.
 * A model is a pure function of (params, state, inputs): the learners own the parameters, and the
 * ONNX exporter (onnx-export.ts) rebuilds exactly this step from the same parameter names.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '@metalearn/core';
import { Dense, initLSTMCell, lstmCell, type Params } from './core-nn.js';
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
  step(params: Params, state: SeqState, x: tf.Tensor2D, yPrev: tf.Tensor2D): StepOut;
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

/** Controller LSTM cell (params `ctrl.weight_ih`, `ctrl.weight_hh`, `ctrl.bias`; forget bias +1). */
function ctrlStep(p: Params, x: tf.Tensor2D, s: SeqState): { h: tf.Tensor2D; c: tf.Tensor2D } {
  const q = sub(p, 'ctrl');
  if (!q.weight_ih || !q.weight_hh || !q.bias) throw new Error(`controller parameters ctrl.weight_ih/weight_hh/bias missing`);
  return lstmCell({ weight_ih: q.weight_ih, weight_hh: q.weight_hh, bias: q.bias }, x, { h: s.h as tf.Tensor2D, c: s.c as tf.Tensor2D });
}

export class MannModel implements SequenceModel {
  readonly kind = 'mann' as const;
  readonly stateShapes: Record<string, number[]>;
  readonly ctrlIn: number;
  readonly key: Dense;
  readonly alpha: Dense;
  readonly beta: Dense;
  readonly out: Dense;

  constructor(readonly inputSize: number, readonly classes: number, readonly opt: MannOptions) {
    const { controllerSize: H, memorySlots: N, memoryWidth: M, readHeads: R } = opt;
    if (R > N) throw new Error(`MANN: readHeads (${R}) must not exceed memorySlots (${N})`);
    this.ctrlIn = inputSize + classes + R * M;
    this.key = new Dense({ name: 'key', units: R * M });
    this.alpha = new Dense({ name: 'alpha', units: R });
    this.beta = new Dense({ name: 'beta', units: R });
    this.out = new Dense({ name: 'out', units: classes });
    this.stateShapes = { h: [H], c: [H], memory: [N, M], usage: [N], read_w: [R, N], reads: [R * M] };
  }

  init(rng: Rng): Params {
    const { controllerSize: H, memoryWidth: M, readHeads: R } = this.opt;
    return {
      ...prefixed('ctrl', initLSTMCell(rng.fork('ctrl'), this.ctrlIn, H, 1)),
      ...prefixed('key', this.key.init(rng.fork('key'), [H])),
      ...prefixed('alpha', this.alpha.init(rng.fork('alpha'), [H])),
      ...(this.opt.keyStrength ? prefixed('beta', this.beta.init(rng.fork('beta'), [H])) : {}),
      ...prefixed('out', this.out.init(rng.fork('out'), [H + R * M])),
    };
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

  step(p: Params, s: SeqState, x: tf.Tensor2D, yPrev: tf.Tensor2D): StepOut {
    const { memoryWidth: M, readHeads: R, gamma } = this.opt;
    const B = x.shape[0];
    const { h, c } = ctrlStep(p, tf.concat([x, yPrev, s.reads as tf.Tensor2D], 1), s);
    const keys = tf.reshape(tf.tanh(this.key.apply(sub(p, 'key'), h)), [B, R, M]) as tf.Tensor3D;
    const alphaLogit = this.alpha.apply(sub(p, 'alpha'), h) as tf.Tensor2D;
    const strength = this.opt.keyStrength ? (tf.add(1, tf.softplus(this.beta.apply(sub(p, 'beta'), h))) as tf.Tensor2D) : undefined;
    const prevUsage = s.usage as tf.Tensor2D;
    const lu = leastUsed(prevUsage, R); // [B,R,N]
    const writeW = lruaWriteWeights(alphaLogit, s.read_w as tf.Tensor3D, lu);
    const erase = tf.reshape(tf.slice(lu, [0, 0, 0], [-1, 1, -1]), [B, -1]) as tf.Tensor2D;
    const memory = writeMemory(s.memory as tf.Tensor3D, erase, writeW, keys);
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
  step(p: Params, s: SeqState, x: tf.Tensor2D, yPrev: tf.Tensor2D): StepOut {
    const { h, c } = ctrlStep(p, tf.concat([x, yPrev], 1), s);
    return { state: { h, c }, logits: this.out.apply(sub(p, 'out'), h) as tf.Tensor2D };
  }
}
