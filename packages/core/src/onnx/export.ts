import type { OnnxModel } from '../contracts.js';
import type { Params } from '../nn/types.js';
import type { Sequential } from '../nn/sequential.js';
import { OnnxGraphBuilder, type OnnxDim } from './builder.js';
import { emitLayers } from './trace.js';

export interface ExportOptions {
  /** buffers (batch-norm running statistics), flat keys as from `model.initState()` */
  state?: Params;
  /** default 'input' */
  inputName?: string;
  /** default 'output' */
  outputName?: string;
  /** batch dimension: 'dynamic' (symbolic 'batch', the default) or a fixed size */
  batch?: 'dynamic' | number;
  /** export batch-norm with batch statistics (as MAML evaluates) instead of running statistics */
  batchStats?: boolean;
  /** graph name (default 'metalearn') */
  graphName?: string;
  /** extra key/value metadata stored in the model */
  metadata?: Record<string, string>;
}

/** The ONNX shape of a per-example tfjs shape: batch dim first, -1 dims as symbols `d{i}`. */
export function onnxShape(perExample: readonly number[], batch: 'dynamic' | number = 'dynamic'): OnnxDim[] {
  return [batch === 'dynamic' ? 'batch' : batch, ...perExample.map((d, i): OnnxDim => (d < 0 ? `d${i + 1}` : d))];
}

/**
 * Export `model` with `params` (and `opts.state`) as one ONNX graph (opset 17, IR 8) by walking its
 * layers' `toOnnx`. The graph input is channels-last like tfjs ([batch, h, w, c] / [batch, len, c]);
 * layers that need channels-first (Conv, Pool, BatchNormalization) get one Transpose where the
 * layout changes, and the output is returned in tfjs layout. Parameters become initializers named
 * like the flat param keys.
 */
export function exportOnnx(model: Sequential, params: Params, opts: ExportOptions = {}): OnnxModel {
  const batch = opts.batch ?? 'dynamic';
  if (batch !== 'dynamic' && !(Number.isInteger(batch) && batch > 0)) throw new Error(`exportOnnx: option 'batch' must be 'dynamic' or a positive integer, got ${JSON.stringify(batch)}`);
  const g = new OnnxGraphBuilder({ name: opts.graphName ?? 'metalearn' });
  const inputName = opts.inputName ?? 'input';
  const outputName = opts.outputName ?? 'output';
  if (inputName === outputName) throw new Error(`exportOnnx: inputName and outputName must differ (both '${inputName}')`);
  let cur = g.addInput(inputName, onnxShape(model.inputShape, batch));
  try {
    cur = emitLayers(g, model, params, cur, { batchStats: opts.batchStats, state: opts.state });
  } catch (e) {
    throw new Error(`exportOnnx: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const out = g.addNode('Identity', [cur], {}, { output: outputName });
  g.addOutput(out, onnxShape(model.outputShape, batch));
  return g.build({ metadata: { layers: model.layers.map((l) => `${l.name}:${l.kind}`).join(','), ...(opts.metadata ?? {}) } });
}
