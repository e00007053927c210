/**
 * ONNX export of the sequence models' step: one graph per time step with explicit state
 * inputs/outputs, so a deployed model streams a task one example at a time. Built with core's
 * graph builder, LSTM-cell emitter and Dense.toOnnx from the same parameters as the tfjs step.
 *
 * Inputs:  x [batch, D], y_prev [batch, C], then `${state}_in` for every state tensor
 *          (MANN: h, c, memory, usage, read_w, reads; LSTM: h, c).
 * Outputs: logits [batch, C], then `${state}_out` in the same order.
 * With `bakeState` the state (batch 1) and the previous label become initializers broadcast over the
 * batch, x is the only input and the output is `logits` [batch, ways]: the adapted classifier.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { OnnxModel } from '@metalearn/core';
import { addLSTMCellInitializers, ExportContext, lstmCellOnnx, OnnxGraphBuilder, type Params, type Dense } from './core-nn.js';
import { COSINE_EPS } from './addressing.js';
import { MannModel, sub, type SeqState, type SequenceModel } from './models.js';

export interface StepExportOptions {
  name?: string;
  /** bake this state (batch 1) into the graph as initializers */
  bakeState?: SeqState;
  /** with bakeState: the previous label fed with every query */
  bakeLabel?: number;
  /** with bakeState: keep only the first `ways` logits */
  ways?: number;
  /** per-example input shape (e.g. [28, 28, 1]); the graph takes x [batch, ...inputShape] and flattens it */
  inputShape?: number[];
}

function denseOnnx(g: OnnxGraphBuilder, layer: Dense, p: Params, input: string, features: number): string {
  const ctx = new ExportContext(g);
  ctx.shape = [features];
  return layer.toOnnx(g, sub(p, layer.name), input, ctx);
}

export function exportSequenceStep(model: SequenceModel, params: Params, opts: StepExportOptions = {}): OnnxModel {
  const g = new OnnxGraphBuilder({ name: opts.name ?? `${model.kind}-step` });
  const D = model.inputSize;
  const C = model.classes;
  const stateNames = Object.keys(model.stateShapes);
  const shapeIn = opts.inputShape && opts.inputShape.length > 1 ? opts.inputShape : [D];
  if (shapeIn.reduce((a, b) => a * b, 1) !== D) throw new Error(`exportSequenceStep: inputShape [${shapeIn}] has ${shapeIn.reduce((a, b) => a * b, 1)} values, the model takes ${D}`);
  const xIn = g.addInput('x', ['batch', ...shapeIn]);
  const x = shapeIn.length > 1 ? g.addNode('Reshape', [xIn, g.int64([-1, D])]) : xIn;
  const st: Record<string, string> = {};
  let yPrev: string;
  if (opts.bakeState) {
    const bs = opts.bakeState;
    // batch size n of x -> target shapes [n, ...dims] for Expand
    const n = g.addNode('Slice', [g.addNode('Shape', [x]), g.int64([0]), g.int64([1])]);
    const expand = (value: string, dims: number[]) => g.addNode('Expand', [value, g.addNode('Concat', [n, g.int64(dims)], { axis: 0 })]);
    for (const k of stateNames) {
      const t = bs[k];
      if (!t || t.shape[0] !== 1) throw new Error(`exportSequenceStep: bakeState.${k} must have batch 1, got ${t ? `[${t.shape}]` : 'nothing'}`);
      st[k] = expand(g.addInitializer(`state.${k}`, t), model.stateShapes[k]!);
    }
    const label = opts.bakeLabel ?? -1;
    const oh = new Float32Array(C);
    if (label >= 0) oh[label] = 1;
    yPrev = expand(g.addInitializer('state.y_prev', { data: oh, shape: [1, C] }), [C]);
  } else {
    yPrev = g.addInput('y_prev', ['batch', C]);
    for (const k of stateNames) st[k] = g.addInput(`${k}_in`, ['batch', ...model.stateShapes[k]!]);
  }

  const H = model.stateShapes.h![0]!;
  const ctrlW = addLSTMCellInitializers(g, 'ctrl', sub(params, 'ctrl'));
  let logits: string;
  const next: Record<string, string> = {};
  if (model instanceof MannModel) {
    const { memoryWidth: M, readHeads: R, gamma, keyStrength } = model.opt;
    const ctrlIn = g.addNode('Concat', [x, yPrev, st.reads!], { axis: 1 });
    const { h, c } = lstmCellOnnx(g, ctrlW, H, ctrlIn, st.h!, st.c!);
    const keys = g.addNode('Reshape', [g.addNode('Tanh', [denseOnnx(g, model.key, params, h, H)]), g.int64([-1, R, M])]);
    const gate = g.addNode('Unsqueeze', [g.addNode('Sigmoid', [denseOnnx(g, model.alpha, params, h, H)]), g.int64([2])]); // [B,R,1]
    const usage0 = st.usage!;
    // least-used slots of the previous usage: one-hot rows, head r -> (r+1)-th least used
    const N = model.opt.memorySlots;
    const topi = g.addNodeMulti('TopK', [g.addNode('Neg', [usage0]), g.int64([R])], 2, { axis: 1, largest: 1, sorted: 1 })[1]!; // [B,R] int64
    const lu = g.addNode('OneHot', [topi, g.int64([N], 'depth'), g.float([0, 1], [2], 'onehot_values')], { axis: -1 }); // [B,R,N]
    const one = g.float(1, [], 'one');
    const writeW = g.addNode('Add', [g.addNode('Mul', [gate, st.read_w!]), g.addNode('Mul', [g.addNode('Sub', [one, gate]), lu])]); // [B,R,N]
    // zero the least-used slot, then add the written vectors (add vectors, or the keys)
    const erase = g.addNode('Slice', [lu, g.int64([0]), g.int64([1]), g.int64([1])]); // [B,1,N]
    const kept = g.addNode('Mul', [st.memory!, g.addNode('Transpose', [g.addNode('Sub', [one, erase])], { perm: [0, 2, 1] })]);
    const values = model.writesAdd ? g.addNode('Reshape', [g.addNode('Tanh', [denseOnnx(g, model.add, params, h, H)]), g.int64([-1, R, M])]) : keys;
    const memory = g.addNode('Add', [kept, g.addNode('MatMul', [g.addNode('Transpose', [writeW], { perm: [0, 2, 1] }), values])]);
    // cosine content read
    const eps = g.float(COSINE_EPS, [], 'cos_eps');
    const dot = g.addNode('MatMul', [keys, g.addNode('Transpose', [memory], { perm: [0, 2, 1] })]);
    const kn = g.addNode('Sqrt', [g.addNode('Add', [g.addNode('ReduceSum', [g.addNode('Mul', [keys, keys]), g.int64([2])], { keepdims: 1 }), eps])]);
    const mn = g.addNode('Sqrt', [g.addNode('Add', [g.addNode('ReduceSum', [g.addNode('Mul', [memory, memory]), g.int64([2])], { keepdims: 0 }), eps])]);
    let sim = g.addNode('Div', [dot, g.addNode('Mul', [kn, g.addNode('Unsqueeze', [mn, g.int64([1])])])]);
    if (keyStrength) {
      const beta = g.addNode('Add', [one, g.addNode('Softplus', [denseOnnx(g, model.beta, params, h, H)])]);
      sim = g.addNode('Mul', [sim, g.addNode('Unsqueeze', [beta, g.int64([2])])]);
    }
    const readW = g.addNode('Softmax', [sim], { axis: -1 });
    const reads = g.addNode('Reshape', [g.addNode('MatMul', [readW, memory]), g.int64([-1, R * M])]);
    const usage = g.addNode('Add', [
      g.addNode('Mul', [usage0, g.float(gamma, [], 'gamma')]),
      g.addNode('Add', [g.addNode('ReduceSum', [readW, g.int64([1])], { keepdims: 0 }), g.addNode('ReduceSum', [writeW, g.int64([1])], { keepdims: 0 })]),
    ]);
    logits = denseOnnx(g, model.out, params, g.addNode('Concat', [h, reads], { axis: 1 }), H + R * M);
    Object.assign(next, { h, c, memory, usage, read_w: readW, reads });
  } else {
    const ctrlIn = g.addNode('Concat', [x, yPrev], { axis: 1 });
    const { h, c } = lstmCellOnnx(g, ctrlW, H, ctrlIn, st.h!, st.c!);
    logits = denseOnnx(g, (model as unknown as { out: Dense }).out, params, h, H);
    Object.assign(next, { h, c });
  }

  if (opts.bakeState) {
    const ways = opts.ways ?? C;
    const out = g.addNode('Slice', [logits, g.int64([0]), g.int64([ways]), g.int64([1])], {}, { output: 'logits' });
    g.addOutput(out, ['batch', ways]);
  } else {
    g.addOutput(g.addNode('Identity', [logits], {}, { output: 'logits' }), ['batch', C]);
    for (const k of stateNames) g.addOutput(g.addNode('Identity', [next[k]!], {}, { output: `${k}_out` }), ['batch', ...model.stateShapes[k]!]);
  }
  return g.build({
    producerName: 'metalearn/memory',
    docString: `${model.kind} step graph`,
    metadata: { kind: model.kind, state: stateNames.join(','), classes: String(C), inputSize: String(D) },
  });
}

/** Initial state of a model as plain arrays keyed by ONNX input name (`${state}_in`). */
export function initialStateArrays(model: SequenceModel, batch = 1): Record<string, { data: Float32Array; dims: number[] }> {
  const s = model.initialState(batch);
  const out: Record<string, { data: Float32Array; dims: number[] }> = {};
  for (const [k, t] of Object.entries(s)) {
    out[`${k}_in`] = { data: t.dataSync() as Float32Array, dims: [...t.shape] };
    t.dispose();
  }
  return out;
}

/** State tensors of a tfjs run as arrays (for parity checks). */
export function stateToArrays(s: SeqState): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(s)) out[k] = tf.tidy(() => t.dataSync() as Float32Array);
  return out;
}
