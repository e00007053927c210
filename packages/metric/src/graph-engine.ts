import type * as tf from '@tensorflow/tfjs-core';
import {
  accuracy,
  appendGradients,
  argmaxRows,
  crossEntropyNodes,
  emitLayers,
  graphThreads,
  oneHotRows,
  OrtGraph,
  symbolicParams,
  TraceGraph,
  type Episode,
  type Params,
  type Sequential,
  type TaskGradient,
} from '@metalearn/core';

/** Training engine of a metric learner: tfjs (wasm) tapes, or whole-episode onnxruntime graphs. */
export type TrainEngine = 'tfjs' | 'onnxruntime';

/** JSON Schema of the `engine` option. */
export const engineSchema = {
  enum: ['tfjs', 'onnxruntime'],
  default: 'tfjs',
  description:
    "training engine: 'tfjs' (gradient tapes on the wasm backend) or 'onnxruntime' (each episode's forward pass, loss and gradients as one onnxruntime graph built from the same layers, on all cores; support and query batch-norm statistics, running-statistics updates and Adam as with tfjs)",
} as const;

/**
 * Builds the head of an episode graph: from the embeddings of the support and query sets (values of
 * `g`, [ns, d] and [nq, d]) and the averaging matrix `avg` [ways, ns] (avg[c, i] = 1/count(c) when
 * y_i = c), return the query logits [nq, ways].
 */
export type GraphHead = (g: TraceGraph, es: string, eq: string, avg: string) => string;

interface Compiled {
  graph: OrtGraph;
  keys: string[];
  stats: { layer: string; count: number }[];
}

/**
 * Episode gradients of an embedding learner (backbone + parameter-free head) through onnxruntime
 * graphs: support and query are embedded together (one batch, as the tfjs path does), the head gives
 * logits, the loss is the query cross-entropy. One graph per episode geometry (support / query sizes,
 * ways), cached. Returns what `taskGradients` returns, so workers, Adam and checkpoints are unchanged.
 */
export class GraphEpisodeEngine {
  private readonly cache = new Map<string, Compiled>();
  private paramData: { params: Params; data: Record<string, Float32Array> } | null = null;

  constructor(
    private readonly learnerId: string,
    private readonly backbone: Sequential,
    private readonly head: GraphHead,
  ) {
    const drop = backbone.layers.find((l) => l.kind === 'dropout' && (l as unknown as { rate: number }).rate > 0);
    if (drop) throw new Error(`${learnerId}: engine 'onnxruntime' does not train dropout layers ('${drop.name}'); use engine 'tfjs'`);
  }

  private compiled(keys: string[], params: Params, ns: number, nq: number, ways: number): Compiled {
    const key = `${ns}/${nq}/${ways}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    try {
      return this.compile(key, keys, params, ns, nq, ways);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`${this.learnerId}: engine 'onnxruntime' cannot build the training graph (${msg}); use engine 'tfjs' for this backbone`, { cause: e });
    }
  }

  private compile(key: string, keys: string[], params: Params, ns: number, nq: number, ways: number): Compiled {
    const g = new TraceGraph({ name: `${this.learnerId}_episode` });
    const shapes: Record<string, number[]> = {};
    for (const k of keys) shapes[k] = [...params[k]!.shape];
    const p = symbolicParams(g, shapes);
    const x = g.addInput('x', [ns + nq, ...this.backbone.inputShape]);
    const avg = g.addInput('avg', [ways, ns]);
    const yq = g.addInput('yq', [nq, ways]);
    const emb = emitLayers(g, this.backbone, p, x, { batchStats: true, poolBeforeRelu: true });
    const d = g.shapeOf(emb)[1]!;
    const es = g.addNode('Slice', [emb, g.int64([0]), g.int64([ns]), g.int64([0])]);
    const eq = g.addNode('Slice', [emb, g.int64([ns]), g.int64([ns + nq]), g.int64([0])]);
    if (g.shapeOf(eq).length !== 2 || g.shapeOf(eq)[1] !== d) throw new Error(`${this.learnerId}: embeddings must be flat [n, d]`);
    const logits = this.head(g, es, eq, avg);
    const loss = crossEntropyNodes(g, logits, yq);
    const grads = appendGradients(g, loss, keys);
    const outputs: Record<string, string> = { loss, logits };
    keys.forEach((k, i) => (outputs[`grad:${k}`] = grads[i]!));
    const stats = g.batchStats.map((s) => ({ layer: s.layer, count: s.count * (ns + nq) }));
    for (const s of g.batchStats) {
      outputs[`mean:${s.layer}`] = s.mean;
      outputs[`var:${s.layer}`] = s.variance;
    }
    const graph = new OrtGraph(g, outputs, { threads: graphThreads() });
    const c = { graph, keys, stats };
    this.cache.set(key, c);
    return c;
  }

  /**
   * Loss, query predictions, gradients and batch-norm running statistics after the episode (from
   * `buffers`, with each layer's momentum), like the tfjs path.
   */
  taskGradient(index: number, ep: Episode, params: Params, buffers: Params, momentum: (layer: string) => number): TaskGradient {
    const keys = Object.keys(params).sort();
    const ns = ep.support.y.length;
    const nq = ep.query.y.length;
    const ways = ep.ways;
    const c = this.compiled(keys, params, ns, nq, ways);
    const counts = new Float32Array(ways);
    for (const y of ep.support.y) {
      if (y < 0 || y >= ways) throw new Error(`${this.learnerId}: support label ${y} is outside 0..${ways - 1}`);
      counts[y]! += 1;
    }
    const empty = [...counts].findIndex((v) => v === 0);
    if (empty >= 0) throw new Error(`${this.learnerId}: class ${empty} has no support example`);
    const avg = new Float32Array(ways * ns);
    ep.support.y.forEach((y, i) => (avg[y * ns + i] = 1 / counts[y]!));
    const yq = oneHotRows(ep.query.y, ways, `${this.learnerId}: query label`);
    const xs = ep.support.x.dataSync() as Float32Array;
    const xq = ep.query.x.dataSync() as Float32Array;
    const x = new Float32Array(xs.length + xq.length);
    x.set(xs, 0);
    x.set(xq, xs.length);
    const feeds: Record<string, Float32Array> = { x, avg, yq };
    // parameter values read once per meta-step (the episodes of a step share them; every update
    // replaces the learner's parameter map)
    if (this.paramData?.params !== params) this.paramData = { params, data: Object.fromEntries(keys.map((k) => [k, params[k]!.dataSync() as Float32Array])) };
    Object.assign(feeds, this.paramData.data);
    const out = c.graph.run(feeds);
    const correct = nq ? Math.round(accuracy(argmaxRows(out['logits']!, nq, ways), ep.query.y) * nq) : 0;
    const grads: Record<string, Float32Array> = {};
    for (const k of keys) grads[k] = out[`grad:${k}`]!.slice();
    const bufs: Record<string, Float32Array> = {};
    if (c.stats.length && Object.keys(buffers).length) {
      for (const s of c.stats) {
        const m = momentum(s.layer);
        const rmKey = `${s.layer}.running_mean`;
        const rvKey = `${s.layer}.running_var`;
        const rm = buffers[rmKey];
        const rv = buffers[rvKey];
        if (!rm || !rv) continue;
        const mean = out[`mean:${s.layer}`]!;
        const variance = out[`var:${s.layer}`]!;
        const unbias = s.count > 1 ? s.count / (s.count - 1) : 1;
        const rmv = rm.dataSync() as Float32Array;
        const rvv = rv.dataSync() as Float32Array;
        bufs[rmKey] = Float32Array.from(rmv, (v, i) => v * (1 - m) + mean[i]! * m);
        bufs[rvKey] = Float32Array.from(rvv, (v, i) => v * (1 - m) + variance[i]! * unbias * m);
      }
      for (const k of Object.keys(buffers).sort()) bufs[k] ??= (buffers[k] as tf.Tensor).dataSync() as Float32Array;
    }
    return { index, loss: out['loss']![0]!, correct, total: nq, grads, buffers: bufs };
  }

  /** Release every cached graph. */
  release(): void {
    for (const c of this.cache.values()) c.graph.release();
    this.cache.clear();
    this.paramData = null;
  }
}
