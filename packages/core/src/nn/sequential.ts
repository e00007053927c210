import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../rng.js';
import type { ApplyContext, Layer, Params } from './types.js';

function describe(s: readonly number[]): string {
  return `[${s.map((d) => (d < 0 ? '?' : String(d))).join(', ')}]`;
}

/**
 * A model (backbone or backbone + head): an ordered list of {@link Layer}s and the per-example input
 * shape (no batch dim; -1 marks a dynamic dimension such as sequence length). Parameters are kept
 * outside, in a flat {@link Params} map with keys `${layer.name}.${local}`, so the same model can be
 * applied to adapted copies of its weights (`apply(params', x)` is pure and differentiable).
 */
export class Sequential {
  readonly layers: readonly Layer[];
  readonly inputShape: readonly number[];
  /** shapes[i] is the per-example input shape of layer i; shapes[layers.length] the output shape */
  readonly shapes: readonly (readonly number[])[];
  private readonly byName: Map<string, number>;

  constructor(layers: readonly Layer[], inputShape: readonly number[]) {
    if (!Array.isArray(inputShape) || inputShape.length === 0 || !inputShape.every((d) => d === -1 || (Number.isInteger(d) && d > 0))) {
      throw new Error(`Sequential: inputShape must be a non-empty list of positive integers (or -1 for dynamic), got ${JSON.stringify(inputShape)}`);
    }
    if (layers.length === 0) throw new Error('Sequential: needs at least one layer');
    this.byName = new Map();
    layers.forEach((l, i) => {
      if (!l || typeof l.apply !== 'function' || typeof l.toOnnx !== 'function') throw new Error(`Sequential: entry ${i} is not a Layer`);
      if (this.byName.has(l.name)) throw new Error(`Sequential: duplicate layer name '${l.name}' (layers ${this.byName.get(l.name)} and ${i})`);
      this.byName.set(l.name, i);
    });
    this.layers = [...layers];
    this.inputShape = [...inputShape];
    const shapes: number[][] = [[...inputShape]];
    for (const l of this.layers) shapes.push(l.outputShape(shapes[shapes.length - 1]!));
    this.shapes = shapes;
  }

  get outputShape(): readonly number[] {
    return this.shapes[this.layers.length]!;
  }

  /** A new model with `more` layers appended (e.g. a classifier head on a backbone). */
  extend(...more: Layer[]): Sequential {
    return new Sequential([...this.layers, ...more], this.inputShape);
  }

  /** The layer called `name`. */
  layer(name: string): Layer {
    const i = this.byName.get(name);
    if (i === undefined) throw new Error(`Sequential: no layer named '${name}' (have: ${[...this.byName.keys()].join(', ')})`);
    return this.layers[i]!;
  }

  /**
   * Fresh parameters. Each layer draws from its own fork of `rng` (`rng.fork(layer.name)`), so the
   * result depends only on the seed and the layer list.
   */
  init(rng: Rng): Params {
    const out: Params = {};
    this.layers.forEach((l, i) => {
      const local = l.init(rng.fork(l.name), [...this.shapes[i]!]);
      this.prefixInto(out, l, local, 'parameter');
    });
    return out;
  }

  /** Fresh buffers (batch-norm running statistics); `{}` when no layer has state. */
  initState(): Params {
    const out: Params = {};
    this.layers.forEach((l, i) => {
      if (l.initState) this.prefixInto(out, l, l.initState([...this.shapes[i]!]), 'state buffer');
    });
    return out;
  }

  private prefixInto(out: Params, l: Layer, local: Params, what: string): void {
    for (const [k, t] of Object.entries(local)) {
      if (k.includes('.')) throw new Error(`${l.kind} '${l.name}': local ${what} name '${k}' must not contain '.'`);
      out[`${l.name}.${k}`] = t;
    }
  }

  /** Shapes of the trainable parameters, by flat key. */
  paramShapes(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    this.layers.forEach((l, i) => {
      const s = [...this.shapes[i]!];
      let local: Record<string, number[]>;
      if (l.paramShapes) local = l.paramShapes(s);
      else {
        const ps = l.init(new Rng('shape-probe'), s);
        local = Object.fromEntries(Object.entries(ps).map(([k, t]) => [k, [...t.shape]]));
        tf.dispose(Object.values(ps));
      }
      for (const [k, sh] of Object.entries(local)) out[`${l.name}.${k}`] = sh;
    });
    return out;
  }

  /** Shapes of the buffers, by flat key. */
  stateShapes(): Record<string, number[]> {
    const st = this.initState();
    const out = Object.fromEntries(Object.entries(st).map(([k, t]) => [k, [...t.shape]]));
    tf.dispose(Object.values(st));
    return out;
  }

  /** Flat parameter names in layer order. */
  paramNames(): string[] {
    return Object.keys(this.paramShapes());
  }

  /** Total number of trainable scalars. */
  numParams(): number {
    return Object.values(this.paramShapes()).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  }

  /**
   * Check that `params` has exactly the model's parameter names and shapes (`what` = 'params' or
   * 'state'); throws one error listing every problem.
   */
  checkParams(params: Params, what: 'params' | 'state' = 'params'): void {
    const want = what === 'params' ? this.paramShapes() : this.stateShapes();
    const problems: string[] = [];
    for (const [k, s] of Object.entries(want)) {
      const t = params[k];
      if (!t) problems.push(`missing '${k}' ${describe(s)}`);
      else if (t.shape.length !== s.length || t.shape.some((d, i) => d !== s[i])) problems.push(`'${k}' has shape ${describe(t.shape)}, expected ${describe(s)}`);
    }
    for (const k of Object.keys(params)) if (!(k in want)) problems.push(`unexpected '${k}'`);
    if (problems.length) throw new Error(`Sequential: ${what} do not match the model: ${problems.join('; ')}`);
  }

  /** Split a flat map into per-layer local views (keys without the `${layer}.` prefix); unknown keys are ignored. */
  localViews(flat: Params | undefined): Params[] {
    const views: Params[] = this.layers.map(() => ({}));
    if (!flat) return views;
    for (const [k, t] of Object.entries(flat)) {
      const dot = k.lastIndexOf('.');
      if (dot <= 0) continue;
      const i = this.byName.get(k.slice(0, dot));
      if (i !== undefined) views[i]![k.slice(dot + 1)] = t;
    }
    return views;
  }

  /**
   * Forward pass on a batch [n, ...inputShape]. Pure in `params` (differentiable to any order,
   * given the engine's gradients); intermediate tensors are released. In training mode batch-norm
   * writes running-stat updates to `ctx.updates` (flat keys) when it is given.
   */
  apply(params: Params, x: tf.Tensor, ctx: ApplyContext = { training: false }): tf.Tensor {
    this.checkInput(x);
    const pv = this.localViews(params);
    const sv = this.localViews(ctx.state);
    return tf.tidy(() => {
      let h = x;
      for (const i of this.applyOrder()) {
        const l = this.layers[i]!;
        const local: ApplyContext = { training: ctx.training, rng: ctx.rng, batchStats: ctx.batchStats, state: sv[i] };
        if (ctx.updates) local.updates = {};
        h = l.apply(pv[i]!, h, local);
        if (ctx.updates && local.updates) for (const [k, t] of Object.entries(local.updates)) ctx.updates[`${l.name}.${k}`] = t;
      }
      return h;
    });
  }

  private order: number[] | null = null;

  /**
   * The order layers run in: a ReLU directly followed by a max-pool runs after it instead
   * (relu(maxpool(x)) = maxpool(relu(x)): relu is monotone, both are parameter-free), so the ReLU and
   * its gradient touch the pooled map only (4x smaller for 2x2 pools). Same output, same gradients
   * (ties among negative inputs get a zero gradient either way).
   */
  private applyOrder(): number[] {
    if (this.order) return this.order;
    const o: number[] = [];
    for (let i = 0; i < this.layers.length; i++) {
      if (this.layers[i]!.kind === 'relu' && this.layers[i + 1]?.kind === 'maxpool') {
        o.push(i + 1, i);
        i++;
      } else o.push(i);
    }
    this.order = o;
    return o;
  }

  /** Throw a clear error unless `x` is a batch of this model's input shape. */
  checkInput(x: tf.Tensor): void {
    const s = this.inputShape;
    const ok = x.rank === s.length + 1 && s.every((d, i) => d < 0 || x.shape[i + 1] === d);
    if (!ok) throw new Error(`Sequential: input batch must have shape [n, ${s.map((d) => (d < 0 ? '?' : d)).join(', ')}], got [${x.shape}]`);
  }

  /** A readable table: layer, kind, output shape, parameter count. */
  summary(): string {
    const shapes = this.paramShapes();
    const rows = this.layers.map((l, i) => {
      const n = Object.entries(shapes)
        .filter(([k]) => k.slice(0, k.lastIndexOf('.')) === l.name)
        .reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
      return `${l.name.padEnd(16)} ${l.kind.padEnd(14)} ${describe(this.shapes[i + 1]!).padEnd(18)} ${n}`;
    });
    return [`input ${describe(this.inputShape)}`, ...rows, `total params: ${this.numParams()}`].join('\n');
  }
}
