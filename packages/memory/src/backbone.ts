/** Backbone choice shared by the memory-family image learners (core's conv4 / mlp), plus ONNX embedding. */
import * as tf from '@tensorflow/tfjs-core';
import { conv4, mlp, ExportContext, onnxShape, type OnnxGraphBuilder, type Params, type Sequential } from '@metalearn/core';

export interface BackboneConfig {
  backbone: 'conv4' | 'mlp';
  /** conv4 filters per block */
  filters: number;
  /** mlp hidden widths */
  hidden: number[];
}

export const backboneSchemaProps = {
  backbone: { type: 'string', enum: ['conv4', 'mlp'], default: 'conv4', description: "feature extractor: core's conv4 (images [h, w, c]) or mlp" },
  filters: { type: 'integer', minimum: 1, default: 64, description: 'conv4 filters per block' },
  hidden: { type: 'array', items: { type: 'integer', minimum: 1 }, default: [64, 64], description: 'mlp hidden widths' },
};

export function makeBackbone(cfg: BackboneConfig, inputShape: number[], where: string): Sequential {
  if (cfg.backbone === 'conv4') {
    if (inputShape.length !== 3) throw new Error(`${where}: backbone 'conv4' needs image inputs [h, w, c], got inputShape ${JSON.stringify(inputShape)} (use backbone: mlp)`);
    return conv4({ inputShape, filters: cfg.filters });
  }
  return mlp({ inputShape, hidden: cfg.hidden });
}

/** Prefix a flat param map. */
export function prefixParams(prefix: string, p: Params): Params {
  const out: Params = {};
  for (const [k, v] of Object.entries(p)) out[`${prefix}.${k}`] = v;
  return out;
}

/** The `${prefix}.*` entries without the prefix. */
export function unprefix(prefix: string, p: Params): Params {
  const out: Params = {};
  const pre = `${prefix}.`;
  for (const [k, v] of Object.entries(p)) if (k.startsWith(pre)) out[k.slice(pre.length)] = v;
  return out;
}

/**
 * Apply a sub-model whose parameters and buffers live under `${prefix}.*` in a learner's flat maps;
 * training-mode batch-norm updates are written back into `updates` under the same prefix.
 */
export function applyPrefixed(model: Sequential, prefix: string, p: Params, x: tf.Tensor, training: boolean, state: Params, updates?: Params): tf.Tensor2D {
  const u: Params | undefined = updates ? {} : undefined;
  const y = model.apply(unprefix(prefix, p), x, { training, state: unprefix(prefix, state), updates: u });
  if (updates && u) for (const [k, t] of Object.entries(u)) updates[`${prefix}.${k}`] = t;
  return y as tf.Tensor2D;
}

/**
 * Emit the backbone's layers into an existing graph (the walk of core's exportOnnx, into a graph that
 * goes on after the backbone). `input` is channels-last like tfjs; returns the embedding value [batch, F].
 */
export function backboneOnnx(g: OnnxGraphBuilder, model: Sequential, params: Params, state: Params | undefined, input: string): string {
  const ctx = new ExportContext(g);
  const pv = model.localViews(params);
  const sv = model.localViews(state);
  let cur = input;
  model.layers.forEach((l, i) => {
    ctx.shape = [...model.shapes[i]!];
    ctx.state = state ? sv[i] : undefined;
    cur = l.toOnnx(g, pv[i]!, cur, ctx);
  });
  ctx.shape = [...model.outputShape];
  return ctx.channelsLast(cur);
}

export function inputShapeOnnx(model: Sequential): (number | string)[] {
  return onnxShape(model.inputShape);
}

/** Zero-gradient identity: the value flows, the tape sees a constant. */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad(((...args: unknown[]) => {
    const v = args[0] as tf.Tensor;
    return { value: tf.clone(v), gradFunc: () => [tf.zerosLike(v)] };
  }) as Parameters<typeof tf.customGrad>[0]);
  return f(x) as T;
}
