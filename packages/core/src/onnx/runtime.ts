import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import type { OnnxModel } from '../contracts.js';
import { writeFileAtomic } from '../checkpoint.js';
import type { Params } from '../nn/types.js';
import type { Sequential } from '../nn/sequential.js';
import { onnxProto, type OnnxDim } from './builder.js';
import { exportOnnx, type ExportOptions } from './export.js';

type Ort = typeof import('onnxruntime-node');
let ortPromise: Promise<Ort> | null = null;

/** onnxruntime-node, loaded on first use (the native binding is not loaded by importing core). */
export function loadOrt(): Promise<Ort> {
  ortPromise ??= import('onnxruntime-node').then((m) => ((m as unknown as { default?: Ort }).default?.InferenceSession ? (m as unknown as { default: Ort }).default : (m as Ort)));
  return ortPromise;
}

/** A float32 array with its shape. */
export interface ShapedData {
  data: Float32Array;
  shape: number[];
}

export interface OnnxRunnerOptions {
  /** threads per operator (default: onnxruntime's choice) */
  intraOpNumThreads?: number;
  /** graph optimisation level (default 'all') */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * An onnxruntime-node session over one model, for frozen-weight inference: create once, run many
 * batches. Inputs are channels-last float32 arrays like tfjs tensors.
 */
export class OnnxRunner {
  private constructor(
    private readonly ort: Ort,
    private session: InferenceSession | null,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  /** Open a session on an {@link OnnxModel}, raw bytes, or a .onnx file path. */
  static async create(model: OnnxModel | Uint8Array | string, opts: OnnxRunnerOptions = {}): Promise<OnnxRunner> {
    const ort = await loadOrt();
    let bytes: Uint8Array;
    if (typeof model === 'string') {
      if (!fs.existsSync(model)) throw new Error(`OnnxRunner: file not found: ${model}`);
      bytes = new Uint8Array(fs.readFileSync(model));
    } else bytes = model instanceof Uint8Array ? model : model.bytes;
    const so: InferenceSession.SessionOptions = { graphOptimizationLevel: opts.graphOptimizationLevel ?? 'all' };
    if (opts.intraOpNumThreads !== undefined) so.intraOpNumThreads = opts.intraOpNumThreads;
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, so);
    } catch (e) {
      const where = typeof model === 'string' ? model : 'model bytes';
      throw new Error(`OnnxRunner: onnxruntime could not load ${where}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    return new OnnxRunner(ort, session, session.inputNames, session.outputNames);
  }

  private live(): InferenceSession {
    if (!this.session) throw new Error('OnnxRunner: session was released');
    return this.session;
  }

  /** Run with named feeds; returns every output. */
  async runFeeds(feeds: Record<string, ShapedData>): Promise<Record<string, ShapedData>> {
    const s = this.live();
    const f: Record<string, OrtTensor> = {};
    for (const [k, v] of Object.entries(feeds)) {
      if (!this.inputNames.includes(k)) throw new Error(`OnnxRunner: model has no input '${k}' (inputs: ${this.inputNames.join(', ')})`);
      if (v.data.length !== size(v.shape)) throw new Error(`OnnxRunner: input '${k}' has ${v.data.length} values but shape [${v.shape}]`);
      f[k] = new this.ort.Tensor('float32', v.data, v.shape);
    }
    const res = await s.run(f);
    const out: Record<string, ShapedData> = {};
    for (const [k, t] of Object.entries(res)) {
      out[k] = { data: t.data as Float32Array, shape: t.dims.map(Number) };
      t.dispose?.();
    }
    return out;
  }

  /** Run a single-input model on one batch; returns the first output. */
  async run(data: Float32Array, shape: number[]): Promise<ShapedData> {
    if (this.inputNames.length !== 1) throw new Error(`OnnxRunner.run: model has ${this.inputNames.length} inputs; use runFeeds`);
    const res = await this.runFeeds({ [this.inputNames[0]!]: { data, shape } });
    return res[this.outputNames[0]!]!;
  }

  /** Run on a tfjs tensor; returns a tfjs tensor (the caller disposes it). */
  async runTensor(x: tf.Tensor): Promise<tf.Tensor> {
    const r = await this.run((await x.data()) as Float32Array, [...x.shape]);
    return tf.tensor(r.data, r.shape, 'float32');
  }

  /**
   * Run a large set in batches of `batchSize` along the first axis; returns the concatenated first
   * output (e.g. embeddings or logits for a whole evaluation set).
   */
  async runBatched(data: Float32Array, shape: number[], batchSize: number): Promise<ShapedData> {
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`OnnxRunner.runBatched: batchSize must be a positive integer, got ${batchSize}`);
    const n = shape[0]!;
    const per = size(shape.slice(1));
    const parts: ShapedData[] = [];
    for (let s = 0; s < n; s += batchSize) {
      const e = Math.min(n, s + batchSize);
      parts.push(await this.run(data.subarray(s * per, e * per), [e - s, ...shape.slice(1)]));
    }
    if (parts.length === 0) throw new Error('OnnxRunner.runBatched: empty input');
    const outPer = size(parts[0]!.shape.slice(1));
    const out = new Float32Array(n * outPer);
    let off = 0;
    for (const p of parts) {
      out.set(p.data, off);
      off += p.data.length;
    }
    return { data: out, shape: [n, ...parts[0]!.shape.slice(1)] };
  }

  /** Free the native session. */
  async release(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await s.release();
  }
}

function toShaped(x: tf.Tensor | ShapedData): ShapedData {
  if ('dataSync' in x) return { data: Float32Array.from(x.dataSync() as ArrayLike<number>), shape: [...x.shape] };
  return x;
}

/**
 * Largest |a - b| over two equally shaped arrays or tensors (throws on shape or length mismatch, so
 * a wrongly typed argument can never compare as "equal").
 */
export function maxAbsDiff(a0: ShapedData | tf.Tensor, b0: ShapedData | tf.Tensor): number {
  const a = toShaped(a0);
  const b = toShaped(b0);
  for (const [x, what] of [[a, 'first'], [b, 'second']] as const) {
    const n = x.shape.reduce((p, d) => p * d, 1);
    if (!(ArrayBuffer.isView(x.data) || Array.isArray(x.data)) || x.data.length !== n) {
      throw new Error(`maxAbsDiff: ${what} argument is not an array of ${n} values for shape [${x.shape}]`);
    }
  }
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`maxAbsDiff: shapes differ: [${a.shape}] vs [${b.shape}]`);
  }
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/**
 * The parity rule of exported models: onnxruntime and tfjs agree when the largest |Δ| is within
 * `tolerance` scaled by the size of the outputs, `max(1, max |expected|)` — float32 rounding grows
 * with the magnitude of the logits (an adapted MAML network's logits of ~10 differ by ~1.5e-4 after
 * four conv + batch-norm layers, i.e. 1.5e-5 relative), so a fixed absolute bound fails large
 * logits for rounding alone. Non-finite expected values give NaN, which no difference passes.
 */
export function parityBound(tolerance: number, expected: ShapedData | tf.Tensor): number {
  const e = toShaped(expected);
  let m = 0;
  for (let i = 0; i < e.data.length; i++) {
    const v = Math.abs(e.data[i]!);
    if (!Number.isFinite(v)) return NaN; // non-finite logits never pass: `diff <= NaN` is false
    if (v > m) m = v;
  }
  return tolerance * Math.max(1, m);
}

/**
 * Run `model` in onnxruntime-node on `input` and compare with `expected` (e.g. the tfjs output).
 * `maxAbsDiff` is NaN when no expectation is given.
 */
export async function verifyOnnx(model: OnnxModel, input: tf.Tensor | ShapedData, expected?: tf.Tensor | ShapedData): Promise<{ maxAbsDiff: number; output: ShapedData }> {
  const runner = await OnnxRunner.create(model);
  try {
    const inp = toShaped(input);
    const output = await runner.run(inp.data, inp.shape);
    return { maxAbsDiff: expected ? maxAbsDiff(output, toShaped(expected)) : NaN, output };
  } finally {
    await runner.release();
  }
}

/**
 * Export `model` and check it against tfjs on `x`: tfjs `apply` in eval mode (running statistics
 * from `opts.state`, or batch statistics with `opts.batchStats`) vs onnxruntime on the export.
 */
export async function verifyExport(
  model: Sequential,
  params: Params,
  x: tf.Tensor,
  opts: ExportOptions = {},
): Promise<{ maxAbsDiff: number; output: ShapedData; expected: ShapedData; onnx: OnnxModel }> {
  const onnx = exportOnnx(model, params, opts);
  const y = model.apply(params, x, { training: false, state: opts.state, batchStats: opts.batchStats });
  const expected = toShaped(y);
  y.dispose();
  const { maxAbsDiff: d, output } = await verifyOnnx(onnx, x, expected);
  return { maxAbsDiff: d, output, expected, onnx };
}

/** Write `model` to `path` atomically (temp file, fsync, rename). */
export function saveOnnx(path: string, model: OnnxModel): void {
  if (!(model?.bytes instanceof Uint8Array) || model.bytes.length === 0) throw new Error(`saveOnnx: model has no bytes (writing ${path})`);
  writeFileAtomic(path, model.bytes);
}

/** Read a .onnx file back as an {@link OnnxModel} (inputs exclude initializers). */
export function loadOnnx(path: string): OnnxModel {
  if (!fs.existsSync(path)) throw new Error(`loadOnnx: file not found: ${path}`);
  const bytes = new Uint8Array(fs.readFileSync(path));
  let m: ReturnType<typeof onnxProto.ModelProto.decode>;
  try {
    m = onnxProto.ModelProto.decode(bytes);
  } catch (e) {
    throw new Error(`loadOnnx: ${path} is not an ONNX model: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const inits = new Set((m.graph?.initializer ?? []).map((t) => t.name));
  const shapeOf = (v: { type?: { tensorType?: { shape?: { dim?: { dimValue?: unknown; dimParam?: string | null }[] | null } | null } | null } | null }): OnnxDim[] =>
    (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue ?? 0)));
  return {
    bytes,
    inputs: (m.graph?.input ?? []).filter((v) => !inits.has(v.name)).map((v) => ({ name: v.name ?? '', shape: shapeOf(v) })),
    outputs: (m.graph?.output ?? []).map((v) => ({ name: v.name ?? '', shape: shapeOf(v) })),
  };
}
