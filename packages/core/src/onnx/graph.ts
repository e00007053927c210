import * as os from 'node:os';
import { isMainThread } from 'node:worker_threads';
import type { Sequential } from '../nn/sequential.js';
import type { Params } from '../nn/types.js';
import { envPositiveInt, loadOrtSync, type OrtTensorCtor, type SyncSession } from '../engine/ort-kernels.js';
import { appendGradients } from './autodiff.js';
import { prod } from './builder.js';
import { emitLayers, symbolicParams, TraceGraph } from './trace.js';

/**
 * Graph training on onnxruntime: a whole training step (forward, loss, gradients — for MAML also the
 * inner loop and its second-order terms) is one ONNX graph run by one onnxruntime session on all
 * cores. The graph is built from the same layer definitions (`toOnnx`) that export models, and
 * differentiated by {@link appendGradients}; a graph is compiled once per batch geometry.
 */

/**
 * Threads of a graph session: env METALEARN_GRAPH_THREADS, else the machine's cores in the main
 * thread and 1 in a worker thread (task-parallel meta-batches already use the cores).
 */
export function graphThreads(): number {
  const n = envPositiveInt('METALEARN_GRAPH_THREADS');
  if (n !== undefined) return n;
  if (!isMainThread) return 1;
  return Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
}

export interface OrtGraphOptions {
  /** intra-op threads (default {@link graphThreads}) */
  threads?: number;
}

/**
 * One compiled graph: named float32 inputs in, the requested outputs out (written into buffers the
 * graph owns; `run` returns them, valid until the next `run`). Runs synchronously.
 */
export class OrtGraph {
  private session: SyncSession | null;
  private readonly outBufs: Record<string, Float32Array> = {};
  private readonly outTensors: Record<string, unknown> = {};
  private readonly Tensor: OrtTensorCtor;
  readonly inputShapes: Record<string, number[]> = {};
  readonly outputShapes: Record<string, number[]> = {};
  readonly nodeCount: number;

  constructor(g: TraceGraph, outputs: Record<string, string>, opts: OrtGraphOptions = {}) {
    const ort = loadOrtSync();
    if (!ort) throw new Error('OrtGraph: onnxruntime-node could not be loaded');
    this.Tensor = ort.Tensor;
    for (const [name, v] of Object.entries(outputs)) {
      const shape = g.shapeOf(v);
      const out = name === v ? v : g.addNode('Identity', [v], {}, { output: name });
      g.addOutput(out, shape);
      this.outputShapes[name] = shape;
      const buf = new Float32Array(prod(shape));
      this.outBufs[name] = buf;
      this.outTensors[name] = new ort.Tensor('float32', buf, shape);
    }
    for (const i of g.graphInputs()) this.inputShapes[i.name] = i.shape as number[];
    const bytes = g.build().bytes;
    this.nodeCount = g.nodeCount - g.pruned;
    const threads = opts.threads ?? graphThreads();
    const s = new ort.binding.binding.InferenceSession();
    s.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      // 'extended', not 'all': the layout level only turns the max-pools of a training graph (its convs
      // have no constant weights) into NCHWc pools with reorders around them, ~3% slower in total
      // (forward+backward batch 80, same process, alternating runs)
      graphOptimizationLevel: 'extended',
      ...(process.env['METALEARN_GRAPH_PROFILE'] ? { enableProfiling: true, profileFilePrefix: process.env['METALEARN_GRAPH_PROFILE'] } : {}),
    });
    this.session = s;
  }

  /** Run with every input fed (float32, in the declared shapes); returns the outputs by name. */
  run(feeds: Record<string, Float32Array>): Record<string, Float32Array> {
    if (!this.session) throw new Error('OrtGraph: released');
    const inputs: Record<string, unknown> = {};
    for (const [name, shape] of Object.entries(this.inputShapes)) {
      const d = feeds[name];
      if (!d) throw new Error(`OrtGraph: missing input '${name}'`);
      const n = prod(shape);
      if (d.length !== n) throw new Error(`OrtGraph: input '${name}' has ${d.length} values, shape [${shape}] needs ${n}`);
      inputs[name] = new this.Tensor('float32', d, shape);
    }
    this.session.run(inputs, this.outTensors, {});
    return this.outBufs;
  }

  release(): void {
    if (process.env['METALEARN_GRAPH_PROFILE']) (this.session as unknown as { endProfiling?: () => void } | null)?.endProfiling?.();
    this.session?.dispose();
    this.session = null;
  }
}

/** Mean cross-entropy of `logits` [m, c] against one-hot `onehot` [m, c] (a scalar value). */
export function crossEntropyNodes(g: TraceGraph, logits: string, onehot: string): string {
  const [m] = g.shapeOf(logits) as [number, number];
  const lp = g.addNode('LogSoftmax', [logits], { axis: -1 });
  const s = g.addNode('ReduceSum', [g.addNode('Mul', [lp, onehot]), g.int64([0, 1])], { keepdims: 0 });
  return g.addNode('Mul', [s, g.float(-1 / m, [])]);
}

/** Negative squared euclidean distances of queries `zq` [m, d] to prototypes [w, d]: logits [m, w]. */
export function protoLogitsNodes(g: TraceGraph, zq: string, protos: string): string {
  const w = g.shapeOf(protos)[0]!;
  const qq = g.addNode('ReduceSum', [g.addNode('Mul', [zq, zq]), g.int64([1])], { keepdims: 1 });
  const pp = g.addNode('Reshape', [g.addNode('ReduceSum', [g.addNode('Mul', [protos, protos]), g.int64([1])], { keepdims: 1 }), g.int64([1, w])]);
  const cross = g.addNode('MatMul', [zq, g.addNode('Transpose', [protos], { perm: [1, 0] })]);
  const d = g.addNode('Add', [g.addNode('Sub', [qq, g.addNode('Mul', [cross, g.float(2, [])])]), pp]);
  return g.addNode('Neg', [d]);
}

/** Flat parameter shapes of `params` (keys in the given order). */
export function shapesOf(params: Params, keys: readonly string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const k of keys) {
    const t = params[k];
    if (!t) throw new Error(`graph: missing parameter '${k}'`);
    out[k] = [...t.shape];
  }
  return out;
}

/**
 * Gradient graph of a loss over a model: inputs are the parameters (named by their keys) and whatever
 * `loss` declares; outputs `loss` and `grad:<key>` for every key. `loss` gets the graph and the model
 * applied as a function `(x: value name) => features` (channels-last, batch statistics in batch-norm).
 */
export function compileLossGrad(
  model: Sequential,
  shapes: Record<string, number[]>,
  loss: (g: TraceGraph, net: (x: string) => string) => string,
  opts: OrtGraphOptions = {},
): OrtGraph {
  const g = new TraceGraph({ name: 'loss_grad' });
  const keys = Object.keys(shapes);
  const p = symbolicParams(g, shapes);
  const net = (x: string) => emitLayers(g, model, p, x, { batchStats: true, poolBeforeRelu: true });
  const l = loss(g, net);
  const grads = appendGradients(g, l, keys);
  return new OrtGraph(g, { loss: l, ...Object.fromEntries(keys.map((k, i) => [`grad:${k}`, grads[i]!])) }, opts);
}

export interface MamlGraphSpec {
  model: Sequential;
  /** network parameter shapes by flat key: all of them are meta-learned */
  shapes: Record<string, number[]>;
  /** support / query batch sizes and ways (classes) */
  support: number;
  query: number;
  ways: number;
  innerSteps: number;
  /** inner learning rate α where no learned rate is given */
  innerLr: number;
  /** first-order MAML: the meta-gradient is the query gradient at the adapted weights */
  firstOrder: boolean;
  /** keys adapted in the inner loop (ANIL: the head); default every key */
  adaptKeys?: string[];
  /**
   * Learned inner learning rates (meta-parameters too, graph inputs): `lr:<key>` (Meta-SGD, the
   * parameter's shape) or `lr:<step>:<key>` (per-step scalars), by their shapes; second order only
   */
  lrShapes?: Record<string, number[]>;
}

/**
 * One MAML task as a graph: inputs the meta-parameters (network parameters and learned rates),
 * `xs` [support, ...inputShape], `ys` one-hot [support, ways], `xq`, `yq`; the inner loop
 * (`innerSteps` SGD steps on the support cross-entropy, each step's gradient itself part of the
 * graph) and the query loss. Outputs `loss` (query, after adaptation), `logits` (query) and
 * `grad:<key>` for every meta-parameter: the meta-gradient through the whole inner loop (second
 * order), or at the adapted weights (first order). Batch-norm uses batch statistics, as in MAML.
 */
export function compileMamlTask(spec: MamlGraphSpec, opts: OrtGraphOptions = {}): OrtGraph {
  const g = new TraceGraph({ name: spec.firstOrder ? 'fomaml_task' : 'maml_task' });
  const keys = Object.keys(spec.shapes);
  const lrKeys = Object.keys(spec.lrShapes ?? {});
  if (spec.firstOrder && lrKeys.length) throw new Error('compileMamlTask: learned learning rates need second-order gradients (firstOrder: false)');
  const adapt = spec.adaptKeys ?? keys;
  for (const k of adapt) if (!spec.shapes[k]) throw new Error(`compileMamlTask: adapted key '${k}' is not a network parameter`);
  const inShape = [...spec.model.inputShape];
  const xs = g.addInput('xs', [spec.support, ...inShape]);
  const ys = g.addInput('ys', [spec.support, spec.ways]);
  const xq = g.addInput('xq', [spec.query, ...inShape]);
  const yq = g.addInput('yq', [spec.query, spec.ways]);
  const p0 = symbolicParams(g, spec.shapes);
  const lrs = symbolicParams(g, spec.lrShapes ?? {});
  const valueOf = (t: unknown) => (t as { value: string }).value;
  const base = keys.map((k) => valueOf(p0[k]));
  let cur = [...base];
  const alpha = g.float(spec.innerLr, []);
  const asParams = (vals: string[]) => symbolicParams(g, spec.shapes, (k) => vals[keys.indexOf(k)]!);
  const adaptIdx = adapt.map((k) => keys.indexOf(k));
  for (let s = 0; s < spec.innerSteps; s++) {
    const logits = emitLayers(g, spec.model, asParams(cur), xs, { batchStats: true, poolBeforeRelu: true });
    const l = crossEntropyNodes(g, logits, ys);
    const gr = appendGradients(g, l, adaptIdx.map((i) => cur[i]!));
    const next = [...cur];
    adaptIdx.forEach((i, j) => {
      const k = keys[i]!;
      const lr = lrs[`lr:${s}:${k}`] ?? lrs[`lr:${k}`];
      next[i] = g.addNode('Sub', [cur[i]!, g.addNode('Mul', [gr[j]!, lr ? valueOf(lr) : alpha])]);
    });
    cur = next;
  }
  const logits = emitLayers(g, spec.model, asParams(cur), xq, { batchStats: true, poolBeforeRelu: true });
  const lq = crossEntropyNodes(g, logits, yq);
  const wrt = spec.firstOrder ? cur : [...base, ...lrKeys.map((k) => valueOf(lrs[k]))];
  const grads = appendGradients(g, lq, wrt);
  const outputs: Record<string, string> = { loss: lq, logits };
  [...keys, ...(spec.firstOrder ? [] : lrKeys)].forEach((k, i) => (outputs[`grad:${k}`] = grads[i]!));
  return new OrtGraph(g, outputs, opts);
}
