import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import type { onnx as OnnxNs } from 'onnx-proto';
import type { OnnxModel } from '../contracts.js';

const require = createRequire(import.meta.url);
/** onnx-proto is CommonJS; load it once. */
export const onnxProto: typeof OnnxNs = require('onnx-proto').onnx;

/** Opset and IR version every graph of the project is written with. */
export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;

/** Value types of graph inputs and outputs ('bool' only there: initializers are float32 / int32 / int64). */
export type OnnxDType = 'float32' | 'int64' | 'int32' | 'bool';
/** A dimension: a fixed size, or a symbolic name such as `'batch'`. */
export type OnnxDim = number | string;

/** Raw data for an initializer (an alternative to passing a tf.Tensor). */
export interface OnnxTensorData {
  data: Float32Array | Int32Array | BigInt64Array | ArrayLike<number>;
  shape: number[];
  /** default: float32 (int32 for Int32Array, int64 for BigInt64Array) */
  dtype?: OnnxDType;
}

/** An explicitly typed attribute value (use when the plain-value inference would guess wrong). */
export interface OnnxAttr {
  readonly __onnxAttr: true;
  type: 'float' | 'int' | 'floats' | 'ints' | 'string' | 'strings' | 'tensor';
  value: number | number[] | string | string[] | OnnxTensorData | tf.Tensor;
}

/**
 * Attribute value. Plain values are typed as follows: string → STRING, string[] → STRINGS,
 * number → FLOAT when the attribute name is a known float attribute (alpha, beta, epsilon,
 * momentum, gamma, ratio, ...) or the value is not an integer, otherwise INT; number[] likewise
 * FLOATS/INTS. Wrap with {@link onnxAttr} helpers to force a type.
 */
export type OnnxAttrValue = number | number[] | string | string[] | OnnxAttr;

/** Helpers to force an attribute's ONNX type. */
export const onnxAttr = {
  float: (v: number): OnnxAttr => ({ __onnxAttr: true, type: 'float', value: v }),
  int: (v: number): OnnxAttr => ({ __onnxAttr: true, type: 'int', value: v }),
  floats: (v: number[]): OnnxAttr => ({ __onnxAttr: true, type: 'floats', value: v }),
  ints: (v: number[]): OnnxAttr => ({ __onnxAttr: true, type: 'ints', value: v }),
  string: (v: string): OnnxAttr => ({ __onnxAttr: true, type: 'string', value: v }),
  strings: (v: string[]): OnnxAttr => ({ __onnxAttr: true, type: 'strings', value: v }),
  tensor: (v: OnnxTensorData | tf.Tensor): OnnxAttr => ({ __onnxAttr: true, type: 'tensor', value: v }),
};

const FLOAT_ATTRS = new Set(['alpha', 'beta', 'epsilon', 'momentum', 'gamma', 'ratio', 'bias', 'lambd', 'clip', 'value_float', 'spatial_scale']);

function isTfTensor(v: unknown): v is tf.Tensor {
  return typeof v === 'object' && v !== null && 'dataSync' in v && 'shape' in v && 'dtype' in v;
}

const DT = () => onnxProto.TensorProto.DataType;
function dtypeCode(d: OnnxDType): number {
  return d === 'float32' ? DT().FLOAT : d === 'int64' ? DT().INT64 : d === 'bool' ? DT().BOOL : DT().INT32;
}

/** Number of elements of a shape. */
export function prod(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Builds one ONNX graph (opset 17, IR 8): inputs, outputs, initializers and nodes, then serialises it
 * with onnx-proto. Every `add*` method returns the name of the value it created, so graphs read like
 * code:
 * ```ts
 * const g = new OnnxGraphBuilder();
 * const x = g.addInput('x', ['batch', 4]);
 * const w = g.addInitializer('head.weight', tf.ones([4, 3]));
 * const y = g.addNode('MatMul', [x, w]);
 * g.addOutput(g.addNode('Relu', [y], {}, { output: 'y' }), ['batch', 3]);
 * const model = g.build();
 * ```
 */
export class OnnxGraphBuilder {
  readonly graphName: string;
  private readonly nodes: OnnxNs.INodeProto[] = [];
  /** Nodes the last {@link build} left out because no output depends on them. */
  pruned = 0;
  private readonly initializers: OnnxNs.ITensorProto[] = [];
  private readonly inputs: { name: string; shape: OnnxDim[]; dtype: OnnxDType }[] = [];
  private readonly outputs: { name: string; shape: OnnxDim[]; dtype: OnnxDType }[] = [];
  private readonly used = new Set<string>();
  private counter = 0;

  constructor(opts: { name?: string } = {}) {
    this.graphName = opts.name ?? 'metalearn';
  }

  /** True when `name` already names a value (input, initializer or node output) of the graph. */
  has(name: string): boolean {
    return this.used.has(name);
  }

  /** A fresh value name starting with `base` (`base`, then `base_1`, `base_2`, ...). */
  uniqueName(base: string): string {
    const clean = base.length > 0 ? base : 'v';
    if (!this.used.has(clean)) return clean;
    let name: string;
    do name = `${clean}_${++this.counter}`;
    while (this.used.has(name));
    return name;
  }

  private claim(name: string, what: string): string {
    if (name.length === 0) throw new Error(`OnnxGraphBuilder: ${what} needs a non-empty name`);
    if (this.used.has(name)) throw new Error(`OnnxGraphBuilder: ${what} '${name}' is already defined in graph '${this.graphName}'`);
    this.used.add(name);
    return name;
  }

  /** Declare a graph input; returns its name. */
  addInput(name: string, shape: OnnxDim[], dtype: OnnxDType = 'float32'): string {
    this.claim(name, 'input');
    this.inputs.push({ name, shape: [...shape], dtype });
    return name;
  }

  /** Mark an existing value as a graph output with the given shape. */
  addOutput(name: string, shape: OnnxDim[], dtype: OnnxDType = 'float32'): string {
    if (!this.used.has(name)) throw new Error(`OnnxGraphBuilder: output '${name}' is not a value of the graph`);
    if (this.outputs.some((o) => o.name === name)) throw new Error(`OnnxGraphBuilder: '${name}' is already an output`);
    this.outputs.push({ name, shape: [...shape], dtype });
    return name;
  }

  /**
   * Add a constant tensor (weights, shapes, axes, ...). `name` must be unused. A tf.Tensor is read
   * synchronously (float32 → FLOAT, int32 → INT32 unless `dtype` says otherwise).
   */
  addInitializer(name: string, value: tf.Tensor | OnnxTensorData, dtype?: OnnxDType): string {
    this.claim(name, 'initializer');
    this.initializers.push(this.tensorProto(name, value, dtype));
    return name;
  }

  /**
   * A layer parameter as a graph value, named from `base` (a fresh name). `perm` transposes it and
   * `shape` reshapes it first (e.g. tfjs' [kh, kw, in, out] filter to ONNX's [out, in, kh, kw]). Here it
   * becomes an initializer holding the transformed values; a {@link TraceGraph} (graph training) makes
   * it a graph input (or an adapted value) followed by the same Transpose / Reshape as nodes, so layers
   * must pass parameters through this method (or {@link addInitializer} with the tensor itself) and
   * never read their values.
   */
  addParam(base: string, value: tf.Tensor, opts: { perm?: number[]; shape?: number[] } = {}): string {
    if (opts.perm && opts.shape) throw new Error(`OnnxGraphBuilder.addParam('${base}'): give perm or shape, not both`);
    if (opts.perm) {
      const t = tf.transpose(value, opts.perm);
      try {
        return this.addInitializer(this.uniqueName(base), t);
      } finally {
        t.dispose();
      }
    }
    if (opts.shape) return this.addInitializer(this.uniqueName(base), { data: value.dataSync() as Float32Array, shape: opts.shape });
    return this.addInitializer(this.uniqueName(base), value);
  }

  /**
   * Called by batch-norm layers exporting with batch statistics: `mean` and `variance` (biased) are
   * the values of layer `layer`'s statistics over `count` elements per channel. A no-op here; a
   * {@link TraceGraph} records them so graph training can update the running statistics.
   */
  noteBatchStats(_layer: string, _mean: string, _variance: string, _count: number): void {}

  /** Like {@link addInitializer} but picks a fresh name from `base`. */
  addConstant(base: string, value: tf.Tensor | OnnxTensorData, dtype?: OnnxDType): string {
    return this.addInitializer(this.uniqueName(base), value, dtype);
  }

  /** An int64 1-D constant (shapes, axes, pads...). */
  int64(values: number[], base = 'const_i64'): string {
    return this.addConstant(base, { data: values, shape: [values.length], dtype: 'int64' });
  }

  /** A float32 constant of the given shape (default: a scalar). */
  float(values: number | number[], shape?: number[], base = 'const_f'): string {
    const arr = typeof values === 'number' ? [values] : values;
    return this.addConstant(base, { data: arr, shape: shape ?? (typeof values === 'number' ? [] : [arr.length]), dtype: 'float32' });
  }

  /**
   * Add a node; returns the name of its (first) output. Inputs must be existing values (use '' for an
   * omitted optional input). `opts.output` names the output (default: fresh name from the op).
   */
  addNode(op: string, inputs: string[], attrs: Record<string, OnnxAttrValue> = {}, opts: { output?: string; name?: string; domain?: string } = {}): string {
    return this.addNodeMulti(op, inputs, 1, attrs, { ...opts, outputs: opts.output !== undefined ? [opts.output] : undefined })[0]!;
  }

  /** Add a node with several outputs; returns their names (use '' in `opts.outputs` to skip one). */
  addNodeMulti(
    op: string,
    inputs: string[],
    numOutputs: number,
    attrs: Record<string, OnnxAttrValue> = {},
    opts: { outputs?: string[]; name?: string; domain?: string } = {},
  ): string[] {
    for (const i of inputs) {
      if (i !== '' && !this.used.has(i)) throw new Error(`OnnxGraphBuilder: ${op} node input '${i}' is not a value of graph '${this.graphName}'`);
    }
    const outs: string[] = [];
    for (let k = 0; k < numOutputs; k++) {
      const requested = opts.outputs?.[k];
      if (requested === '') outs.push('');
      else outs.push(this.claim(requested ?? this.uniqueName(`${op.toLowerCase()}_out${numOutputs > 1 ? k : ''}`), `${op} output`));
    }
    const nodeName = opts.name ?? `${op}_${this.nodes.length}`;
    const attribute = Object.entries(attrs).map(([k, v]) => this.attributeProto(k, v));
    this.nodes.push({ opType: op, input: inputs, output: outs, name: nodeName, attribute, domain: opts.domain ?? '' });
    return outs;
  }

  /** The graph inputs declared so far. */
  graphInputs(): { name: string; shape: OnnxDim[]; dtype: OnnxDType }[] {
    return this.inputs.map((i) => ({ ...i, shape: [...i.shape] }));
  }

  /** Number of nodes so far. */
  get nodeCount(): number {
    return this.nodes.length;
  }

  /** The names of all initializers so far. */
  initializerNames(): string[] {
    return this.initializers.map((t) => t.name!);
  }

  /** Serialise the graph to an {@link OnnxModel}. */
  build(opts: { producerName?: string; docString?: string; metadata?: Record<string, string> } = {}): OnnxModel {
    if (this.inputs.length === 0) throw new Error(`OnnxGraphBuilder: graph '${this.graphName}' has no inputs`);
    if (this.outputs.length === 0) throw new Error(`OnnxGraphBuilder: graph '${this.graphName}' has no outputs`);
    const vi = (v: { name: string; shape: OnnxDim[]; dtype: OnnxDType }): OnnxNs.IValueInfoProto => ({
      name: v.name,
      type: {
        tensorType: {
          elemType: dtypeCode(v.dtype),
          shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
    // only the nodes the outputs depend on (a node nothing reads would still run in onnxruntime), and
    // only the initializers those nodes read
    const used = new Set<string>(this.outputs.map((o) => o.name));
    const live: OnnxNs.INodeProto[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i]!;
      if (!(n.output ?? []).some((o) => used.has(o))) continue;
      live.push(n);
      for (const v of n.input ?? []) used.add(v);
    }
    live.reverse();
    this.pruned = this.nodes.length - live.length;
    const model = onnxProto.ModelProto.create({
      irVersion: ONNX_IR_VERSION,
      opsetImport: [{ domain: '', version: ONNX_OPSET }],
      producerName: opts.producerName ?? 'metalearn',
      producerVersion: '0.1.0',
      docString: opts.docString ?? '',
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.graphName,
        node: live,
        initializer: this.initializers.filter((t) => used.has(t.name!)),
        input: this.inputs.map(vi),
        output: this.outputs.map(vi),
      },
    });
    const bytes = onnxProto.ModelProto.encode(model).finish();
    return {
      bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice(),
      inputs: this.inputs.map((i) => ({ name: i.name, shape: [...i.shape] })),
      outputs: this.outputs.map((o) => ({ name: o.name, shape: [...o.shape] })),
    };
  }

  private tensorProto(name: string, value: tf.Tensor | OnnxTensorData, dtype?: OnnxDType): OnnxNs.ITensorProto {
    let shape: number[];
    let data: ArrayLike<number> | BigInt64Array;
    let dt: OnnxDType;
    if (isTfTensor(value)) {
      if (value.dtype !== 'float32' && value.dtype !== 'int32') throw new Error(`OnnxGraphBuilder: initializer '${name}' has unsupported tfjs dtype ${value.dtype}`);
      shape = [...value.shape];
      data = value.dataSync() as Float32Array | Int32Array;
      dt = dtype ?? (value.dtype === 'int32' ? 'int32' : 'float32');
    } else {
      shape = [...value.shape];
      data = value.data;
      dt = dtype ?? value.dtype ?? (value.data instanceof Int32Array ? 'int32' : value.data instanceof BigInt64Array ? 'int64' : 'float32');
    }
    if (dt === 'bool') throw new Error(`OnnxGraphBuilder: initializer '${name}': bool initializers are not supported`);
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`OnnxGraphBuilder: initializer '${name}' has invalid shape [${shape}]`);
    if (data.length !== prod(shape)) throw new Error(`OnnxGraphBuilder: initializer '${name}' has ${data.length} values but shape [${shape}] needs ${prod(shape)}`);
    let raw: Uint8Array;
    if (dt === 'float32') {
      const a = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>, Number);
      raw = toLittleEndian(a);
    } else if (dt === 'int32') {
      const a = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>, Number);
      raw = toLittleEndian(a);
    } else {
      const a = data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data as ArrayLike<number>, (v) => BigInt(Math.trunc(v))));
      raw = toLittleEndian(a);
    }
    return { name, dims: shape, dataType: dtypeCode(dt), rawData: raw };
  }

  private attributeProto(name: string, v: OnnxAttrValue): OnnxNs.IAttributeProto {
    const T = onnxProto.AttributeProto.AttributeType;
    let a: OnnxAttr;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && (v as OnnxAttr).__onnxAttr) a = v as OnnxAttr;
    else if (typeof v === 'string') a = onnxAttr.string(v);
    else if (typeof v === 'number') a = FLOAT_ATTRS.has(name) || !Number.isInteger(v) ? onnxAttr.float(v) : onnxAttr.int(v);
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) a = onnxAttr.strings(v as string[]);
    else if (Array.isArray(v) && v.every((x) => typeof x === 'number'))
      a = FLOAT_ATTRS.has(name) || (v as number[]).some((x) => !Number.isInteger(x)) ? onnxAttr.floats(v as number[]) : onnxAttr.ints(v as number[]);
    else throw new Error(`OnnxGraphBuilder: attribute '${name}' has an unsupported value ${JSON.stringify(v)}`);
    switch (a.type) {
      case 'float':
        return { name, type: T.FLOAT, f: a.value as number };
      case 'int':
        return { name, type: T.INT, i: a.value as number };
      case 'floats':
        return { name, type: T.FLOATS, floats: a.value as number[] };
      case 'ints':
        return { name, type: T.INTS, ints: a.value as number[] };
      case 'string':
        return { name, type: T.STRING, s: new TextEncoder().encode(a.value as string) };
      case 'strings':
        return { name, type: T.STRINGS, strings: (a.value as string[]).map((s) => new TextEncoder().encode(s)) };
      case 'tensor':
        return { name, type: T.TENSOR, t: this.tensorProto(`${name}_value`, a.value as tf.Tensor | OnnxTensorData) };
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function toLittleEndian(a: Float32Array | Int32Array | BigInt64Array): Uint8Array {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
  if (!LITTLE_ENDIAN) {
    const w = a.BYTES_PER_ELEMENT;
    for (let i = 0; i < bytes.length; i += w) bytes.subarray(i, i + w).reverse();
  }
  return bytes;
}
