import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '../src/rng.js';
import {
  AvgPool, BatchNorm, Conv1d, Conv2d, Dense, Dropout, Flatten, GlobalAvgPool, LeakyReLU, LSTM, MaxPool, ReLU, Sequential, Sigmoid, Tanh,
  conv1dEncoder, conv4, mlp, normalTensor, type Layer, type Params,
} from '../src/nn/index.js';
import { OnnxGraphBuilder, OnnxRunner, onnxAttr, exportOnnx, loadOnnx, saveOnnx, verifyExport, verifyOnnx, type ExportContext } from '../src/onnx/index.js';

const TOL = 1e-4;

/** random non-trivial BN state and affine params so parity is not trivially satisfied */
function perturbBn(model: Sequential, params: Params, state: Params, rng: Rng): void {
  for (const l of model.layers) {
    if (l.kind !== 'batchnorm') continue;
    for (const k of ['weight', 'bias']) {
      const key = `${l.name}.${k}`;
      if (params[key]) params[key] = normalTensor(rng, [...params[key]!.shape], 0.5, k === 'weight' ? 1 : 0);
    }
    const rm = `${l.name}.running_mean`;
    const rv = `${l.name}.running_var`;
    if (state[rm]) state[rm] = normalTensor(rng, [...state[rm]!.shape], 0.3);
    if (state[rv]) state[rv] = tf.tensor(rng.uniformArray(state[rv]!.size, 0.5, 2), state[rv]!.shape);
  }
}

async function parity(model: Sequential, n: number, seed: number, opts: { batchStats?: boolean; state?: boolean; len?: number } = {}) {
  const rng = new Rng(seed);
  const params = model.init(rng);
  const state = model.initState();
  perturbBn(model, params, state, rng);
  const shape = model.inputShape.map((d) => (d < 0 ? opts.len ?? 9 : d));
  const x = normalTensor(rng, [n, ...shape], 1);
  const r = await verifyExport(model, params, x, { state: opts.state === false ? undefined : state, batchStats: opts.batchStats });
  tf.dispose([x, ...Object.values(params), ...Object.values(state)]);
  return r;
}

describe('ONNX graph builder', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('builds and runs a hand-written graph (initializers, typed attributes, multi-output nodes)', async () => {
    const g = new OnnxGraphBuilder({ name: 'hand' });
    const x = g.addInput('x', ['batch', 3]);
    const w = g.addInitializer('w', { data: [1, 0, 0, 1, 1, 1], shape: [3, 2] });
    const y = g.addNode('MatMul', [x, w]);
    const lr = g.addNode('LeakyRelu', [y], { alpha: onnxAttr.float(0.5) });
    const [a, b] = g.addNodeMulti('Split', [lr, g.int64([1, 1])], 2, { axis: 1 });
    g.addOutput(g.addNode('Sub', [a!, b!], {}, { output: 'out' }), ['batch', 1]);
    const m = g.build();
    expect(m.inputs).toEqual([{ name: 'x', shape: ['batch', 3] }]);
    // row 1: [1,-2,3]·w = [4, 1] → 4 - 1 = 3; row 2: [-4,0,0]·w = [-4, 0] → leaky [-2, 0] → -2
    const r = await verifyOnnx(m, { data: new Float32Array([1, -2, 3, -4, 0, 0]), shape: [2, 3] }, { data: new Float32Array([3, -2]), shape: [2, 1] });
    expect(Array.from(r.output.data)).toEqual([3, -2]);
    expect(r.maxAbsDiff).toBe(0);
    const wrong = await verifyOnnx(m, { data: new Float32Array([1, -2, 3, -4, 0, 0]), shape: [2, 3] }, { data: new Float32Array([3, -1]), shape: [2, 1] });
    expect(wrong.maxAbsDiff).toBe(1);
  });

  it('rejects unknown inputs, duplicate names and size mismatches with clear errors', () => {
    const g = new OnnxGraphBuilder();
    g.addInput('x', [1]);
    expect(() => g.addNode('Relu', ['nope'])).toThrow(/input 'nope' is not a value/);
    expect(() => g.addInitializer('x', { data: [1], shape: [1] })).toThrow(/'x' is already defined/);
    expect(() => g.addInitializer('w', { data: [1, 2], shape: [3] })).toThrow(/2 values but shape \[3\]/);
    expect(() => g.build()).toThrow(/no outputs/);
  });
});

describe('ONNX export parity per layer (tfjs cpu vs onnxruntime, eval mode)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  const cases: [string, () => Layer[], number[]][] = [
    ['Dense', () => [new Dense({ name: 'd', units: 5 })], [7]],
    ['Dense on rank-3 input (time-distributed)', () => [new Dense({ name: 'd', units: 4, bias: false })], [6, 3]],
    ['Conv2d same stride 1', () => [new Conv2d({ name: 'c', filters: 4, kernelSize: 3 })], [7, 6, 2]],
    ['Conv2d same stride 2 (asymmetric pad)', () => [new Conv2d({ name: 'c', filters: 3, kernelSize: 3, strides: 2 })], [8, 7, 2]],
    ['Conv2d valid stride 2, 2x4 kernel', () => [new Conv2d({ name: 'c', filters: 3, kernelSize: [2, 4], strides: 2, padding: 'valid' })], [9, 9, 3]],
    ['Conv1d same (even kernel)', () => [new Conv1d({ name: 'c', filters: 4, kernelSize: 4 })], [11, 3]],
    ['Conv1d valid stride 2', () => [new Conv1d({ name: 'c', filters: 2, kernelSize: 3, strides: 2, padding: 'valid' })], [12, 3]],
    ['BatchNorm (running stats) after conv', () => [new Conv2d({ name: 'c', filters: 3, kernelSize: 1 }), new BatchNorm({ name: 'bn' })], [4, 4, 2]],
    ['BatchNorm (running stats) on features', () => [new BatchNorm({ name: 'bn' })], [6]],
    ['BatchNorm non-affine', () => [new BatchNorm({ name: 'bn', affine: false })], [5, 3]],
    ['ReLU', () => [new ReLU({ name: 'a' })], [4, 3]],
    ['LeakyReLU', () => [new LeakyReLU({ name: 'a', alpha: 0.1 })], [4, 3]],
    ['Sigmoid', () => [new Sigmoid({ name: 'a' })], [5]],
    ['Tanh', () => [new Tanh({ name: 'a' })], [2, 2, 2]],
    ['MaxPool 2x2 valid (odd size)', () => [new MaxPool({ name: 'p' })], [7, 5, 3]],
    ['MaxPool 3 stride 2 same', () => [new MaxPool({ name: 'p', poolSize: 3, strides: 2, padding: 'same' })], [7, 6, 2]],
    ['MaxPool 1-D', () => [new MaxPool({ name: 'p', poolSize: 2 })], [9, 3]],
    ['AvgPool 2x2 valid', () => [new AvgPool({ name: 'p' })], [6, 5, 2]],
    ['AvgPool 3 stride 2 same', () => [new AvgPool({ name: 'p', poolSize: 3, strides: 2, padding: 'same' })], [7, 7, 2]],
    ['GlobalAvgPool after conv (channels-first input)', () => [new Conv2d({ name: 'c', filters: 3, kernelSize: 3 }), new GlobalAvgPool({ name: 'g' })], [5, 4, 2]],
    ['GlobalAvgPool on channels-last input', () => [new GlobalAvgPool({ name: 'g' })], [5, 4, 2]],
    ['Flatten after conv (NHWC order restored)', () => [new Conv2d({ name: 'c', filters: 3, kernelSize: 3 }), new Flatten({ name: 'f' })], [3, 4, 2]],
    ['Dropout (identity in eval)', () => [new Dropout({ name: 'drop', rate: 0.5 }), new Dense({ name: 'd', units: 2 })], [5]],
    ['LSTM last state', () => [new LSTM({ name: 'lstm', units: 5 })], [6, 3]],
    ['LSTM full sequence', () => [new LSTM({ name: 'lstm', units: 4, returnSequences: true })], [5, 3]],
  ];

  for (const [name, make, shape] of cases) {
    it(name, async () => {
      const model = new Sequential(make(), shape);
      const r = await parity(model, 3, 11);
      expect(r.output.shape).toEqual([3, ...model.outputShape]);
      expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
    });
  }

  it('BatchNorm exported with batch statistics matches tfjs batch-stat mode', async () => {
    const model = new Sequential([new Conv2d({ name: 'c', filters: 3, kernelSize: 3 }), new BatchNorm({ name: 'bn', trackRunningStats: false }), new ReLU({ name: 'r' })], [5, 5, 2]);
    const r = await parity(model, 4, 5, { state: false });
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
    // and batchStats: true overrides tracked running stats
    const m2 = new Sequential([new BatchNorm({ name: 'bn' })], [3, 2]);
    const r2 = await parity(m2, 4, 6, { batchStats: true });
    expect(r2.maxAbsDiff).toBeLessThanOrEqual(TOL);
    // the output really is batch-normalised: each channel has mean β, not the running-stat result
    const r3 = await parity(m2, 4, 6);
    expect(maxDiff(r2.output.data, r3.output.data)).toBeGreaterThan(1e-2);
  });

  it('BN export without the state it needs fails with a clear message', () => {
    const model = new Sequential([new BatchNorm({ name: 'bn' })], [3]);
    const p = model.init(new Rng(1));
    expect(() => exportOnnx(model, p)).toThrow(/layer 0 \(batchnorm 'bn'\).*missing state buffer 'bn.running_mean'/);
  });
});

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('ONNX export parity for backbones', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('Conv-4 28x28x1 (+ dense head, running-stat BN)', async () => {
    const model = conv4({ inputShape: [28, 28, 1], filters: 8 }).extend(new Dense({ name: 'head', units: 5 }));
    expect(model.outputShape).toEqual([5]);
    const r = await parity(model, 3, 21);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
  });

  it('Conv-4 84x84x3 (flatten order 5x5xC channels-last)', async () => {
    const model = conv4({ inputShape: [84, 84, 3], filters: 4 });
    expect(model.outputShape).toEqual([100]);
    const r = await parity(model, 2, 22);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
  });

  it('Conv-4 with batch-stat BN (MAML style)', async () => {
    const model = conv4({ inputShape: [28, 28, 1], filters: 6, trackRunningStats: false });
    const r = await parity(model, 5, 23, { state: false });
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
  });

  it('MLP', async () => {
    const model = mlp({ inputShape: [1], hidden: [40, 40], outputs: 1 });
    const r = await parity(model, 10, 24);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
    const m2 = mlp({ inputShape: [4, 4, 1], hidden: [16], outputs: 3, batchNorm: true });
    const r2 = await parity(m2, 4, 25);
    expect(r2.maxAbsDiff).toBeLessThanOrEqual(TOL);
  });

  it('Conv1d encoder with a dynamic length: one export, several lengths', async () => {
    const model = conv1dEncoder({ inputShape: [-1, 3], filters: [8, 8, 8] });
    expect(model.outputShape).toEqual([8]);
    const rng = new Rng(26);
    const params = model.init(rng);
    const state = model.initState();
    perturbBn(model, params, state, rng);
    const onnx = exportOnnx(model, params, { state });
    expect(onnx.inputs[0]!.shape).toEqual(['batch', 'd1', 3]);
    const runner = await OnnxRunner.create(onnx);
    try {
      for (const len of [5, 16, 33]) {
        const x = normalTensor(rng, [2, len, 3], 1);
        const y = model.apply(params, x, { training: false, state });
        const o = await runner.run(x.dataSync() as Float32Array, [2, len, 3]);
        expect(o.shape).toEqual([2, 8]);
        expect(maxDiff(o.data, y.dataSync() as Float32Array)).toBeLessThanOrEqual(TOL);
        tf.dispose([x, y]);
      }
    } finally {
      await runner.release();
    }
  });

  it('LSTM sequence model with a dense head', async () => {
    const model = new Sequential([new LSTM({ name: 'lstm', units: 8, returnSequences: true }), new LSTM({ name: 'lstm2', units: 6 }), new Dense({ name: 'out', units: 3 })], [-1, 4]);
    const r = await parity(model, 3, 27, { len: 7 });
    expect(r.output.shape).toEqual([3, 3]);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
  });
});

describe('custom layers, files, runner', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  /** A prototype-distance head written outside nn: logits = -||z - p_k||², prototypes baked in. */
  class ProtoHead implements Layer {
    readonly kind = 'protohead';
    constructor(
      readonly name: string,
      readonly prototypes: tf.Tensor2D,
    ) {}
    outputShape(): number[] {
      return [this.prototypes.shape[0]];
    }
    init(): Params {
      return {};
    }
    apply(_p: Params, z: tf.Tensor): tf.Tensor {
      return tf.tidy(() => tf.neg(tf.sum(tf.square(tf.sub(tf.expandDims(z, 1), tf.expandDims(this.prototypes, 0))), 2)));
    }
    toOnnx(g: OnnxGraphBuilder, _p: Params, input: string, ctx: ExportContext): string {
      const z = ctx.channelsLast(input);
      const protos = g.addInitializer(`${this.name}.prototypes`, tf.expandDims(this.prototypes, 0));
      const zz = g.addNode('Unsqueeze', [z, g.int64([1])]);
      const d = g.addNode('Sub', [zz, protos]);
      const s = g.addNode('ReduceSum', [g.addNode('Mul', [d, d]), g.int64([2])], { keepdims: 0 });
      return g.addNode('Neg', [s]);
    }
  }

  it('a custom head built on the public builder API exports with the backbone', async () => {
    const backbone = conv4({ inputShape: [28, 28, 1], filters: 4 });
    const protos = normalTensor(new Rng(3), [5, 4], 1) as tf.Tensor2D;
    const model = backbone.extend(new ProtoHead('proto', protos));
    const r = await parity(model, 3, 31);
    expect(r.output.shape).toEqual([3, 5]);
    expect(r.maxAbsDiff).toBeLessThanOrEqual(TOL);
  });

  it('saveOnnx writes atomically, loadOnnx reads it back, OnnxRunner runs batches', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-onnx-'));
    const model = mlp({ inputShape: [6], hidden: [8], outputs: 2 });
    const params = model.init(new Rng(4));
    const m = exportOnnx(model, params, { inputName: 'feat', outputName: 'logits' });
    const file = path.join(dir, 'sub', 'model.onnx');
    saveOnnx(file, m);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['model.onnx']); // no temp file left behind
    const back = loadOnnx(file);
    expect(back.inputs).toEqual([{ name: 'feat', shape: ['batch', 6] }]);
    expect(back.outputs).toEqual([{ name: 'logits', shape: ['batch', 2] }]);
    const x = normalTensor(new Rng(5), [11, 6], 1);
    const runner = await OnnxRunner.create(file);
    const all = await runner.runBatched(x.dataSync() as Float32Array, [11, 6], 4);
    const y = model.apply(params, x);
    expect(all.shape).toEqual([11, 2]);
    expect(maxDiff(all.data, y.dataSync() as Float32Array)).toBeLessThanOrEqual(TOL);
    const t = await runner.runTensor(x);
    expect(t.shape).toEqual([11, 2]);
    await runner.release();
    await expect(runner.run(new Float32Array(6), [1, 6])).rejects.toThrow(/released/);
    expect(() => loadOnnx(path.join(dir, 'missing.onnx'))).toThrow(/file not found/);
    tf.dispose([x, y, t, ...Object.values(params)]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('fixed batch size and custom names are honoured', () => {
    const model = mlp({ inputShape: [3], hidden: [], outputs: 2 });
    const p = model.init(new Rng(1));
    const m = exportOnnx(model, p, { batch: 4 });
    expect(m.inputs[0]).toEqual({ name: 'input', shape: [4, 3] });
    expect(m.outputs[0]).toEqual({ name: 'output', shape: [4, 2] });
    expect(() => exportOnnx(model, p, { batch: 0 })).toThrow(/'batch'/);
  });
});
