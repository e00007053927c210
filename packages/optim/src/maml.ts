import * as tf from '@tensorflow/tfjs-core';
import type { FunctionalNet, NetContext, Params, Task, TaskLoss } from './types.js';
import type { InnerOptimizer, LrValue } from './inner.js';
import { sgd } from './inner.js';
import { fromList, keysOf, toList } from './params.js';

/**
 * Meta-parameters: the network's parameters (their own keys) plus optional learned inner learning
 * rates: `lr:<key>` (Meta-SGD, same shape as the parameter) or `lr:<step>:<key>` (per-step,
 * per-tensor scalar rates, as in MAML++).
 */
export const LR_PREFIX = 'lr:';

export function isLrKey(k: string): boolean {
  return k.startsWith(LR_PREFIX);
}

/** Split meta-parameters into network parameters and learned learning rates. */
export function splitMeta(meta: Params): { net: Params; lrs: Params } {
  const net: Params = {};
  const lrs: Params = {};
  for (const k of Object.keys(meta)) (isLrKey(k) ? lrs : net)[k] = meta[k]!;
  return { net, lrs };
}

export interface InnerLoopSpec {
  net: FunctionalNet;
  loss: TaskLoss;
  /** number of inner gradient steps */
  steps: number;
  /** base inner learning rate α (used where no learned rate exists) */
  lr: number;
  /** differentiable inner optimiser (default: SGD) */
  optimizer?: InnerOptimizer;
  /** keys adapted in the inner loop (ANIL: the head only). Default: every network key. */
  adaptKeys?: string[];
  /** forward context; default `{ training: true }` (batch-norm in batch-statistics mode, as in MAML) */
  ctx?: NetContext;
  /** iMAML: minimise L(φ) + λ/2·||φ − anchor||² (anchor = θ, treated as a constant) */
  proximal?: { lambda: number; anchor: Params };
}

/** Gradient that is the identity forward and zero backward (stops second-order terms). */
const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

function lrGetter(spec: InnerLoopSpec, lrs: Params, step: number): (k: string) => LrValue {
  return (k: string) => lrs[`${LR_PREFIX}${step}:${k}`] ?? lrs[`${LR_PREFIX}${k}`] ?? spec.lr;
}

/**
 * The inner loop: `steps` optimiser steps on (x, y) starting from `params`.
 *
 * `createGraph: true` keeps the graph of the inner gradients, so an enclosing `tf.grads` gets the
 * full (second-order) meta-gradient. With `false` the inner gradients are constants (first order);
 * in that mode intermediate tensors are freed step by step, so memory does not grow with `steps`.
 */
export function innerLoop(
  spec: InnerLoopSpec,
  params: Params,
  x: tf.Tensor,
  y: tf.Tensor,
  createGraph: boolean,
  lrs: Params = {},
): Params {
  const opt = spec.optimizer ?? sgd();
  const ctx = spec.ctx ?? { training: true };
  const keys = (spec.adaptKeys ?? keysOf(params)).slice().sort();
  for (const k of keys) if (!params[k]) throw new Error(`innerLoop: adapted key '${k}' is not a network parameter`);
  let fast: Params = { ...params };
  let state: Params = opt.init(Object.fromEntries(keys.map((k) => [k, params[k]!])));
  for (let s = 0; s < spec.steps; s++) {
    const run = (): { p: Params; st: Params } => {
      const frozen = fast;
      const f = (...ts: tf.Tensor[]): tf.Scalar => {
        const p = { ...frozen, ...fromList(keys, ts) };
        let l = spec.loss(spec.net.apply(p, x, ctx), y);
        if (spec.proximal) {
          const { lambda, anchor } = spec.proximal;
          let reg: tf.Tensor = tf.scalar(0);
          for (const k of keys) reg = tf.add(reg, tf.sum(tf.squaredDifference(p[k]!, anchor[k]!)));
          l = tf.add(l, tf.mul(reg, lambda / 2)) as tf.Scalar;
        }
        return l;
      };
      let gs = tf.grads(f)(toList(fast, keys));
      if (!createGraph) gs = gs.map((g) => stopGradient(g));
      const r = opt.step(fast, fromList(keys, gs), state, lrGetter(spec, lrs, s), s);
      return { p: r.params, st: r.state };
    };
    if (createGraph) {
      const r = run();
      fast = r.p;
      state = r.st;
    } else {
      const prevFast = fast;
      const prevState = state;
      const r = tf.tidy(() => {
        const o = run();
        return { ...Object.fromEntries(keys.map((k) => [`p|${k}`, o.p[k]!])), ...Object.fromEntries(Object.entries(o.st).map(([k, v]) => [`s|${k}`, v])) };
      });
      fast = { ...prevFast };
      const newState: Params = {};
      for (const [k, v] of Object.entries(r)) {
        if (k.startsWith('p|')) fast[k.slice(2)] = v;
        else newState[k.slice(2)] = v;
      }
      // free the previous step's adapted tensors (never the caller's params)
      if (s > 0) for (const k of keys) prevFast[k]!.dispose();
      for (const v of Object.values(prevState)) v.dispose();
      state = newState;
    }
  }
  if (!createGraph) for (const v of Object.values(state)) v.dispose();
  return fast;
}

export interface TaskGradResult {
  /** query loss after adaptation */
  loss: number;
  /** query predictions after adaptation (caller disposes) */
  queryOut: tf.Tensor;
  /** meta-gradient w.r.t. every meta-parameter (caller disposes) */
  grads: Params;
}

/**
 * MAML meta-gradient for one task, second order: d/dθ L_q(inner(θ)) with the inner gradients'
 * graph kept (create_graph), through `tf.grads`. Learned learning rates in `meta` (Meta-SGD,
 * per-step rates) get their gradients too.
 */
export function mamlTaskGrad(spec: InnerLoopSpec, meta: Params, task: Task): TaskGradResult {
  const keys = keysOf(meta);
  let queryOut: tf.Tensor | null = null;
  const ctx = spec.ctx ?? { training: true };
  const f = (...ts: tf.Tensor[]): tf.Scalar => {
    const { net, lrs } = splitMeta(fromList(keys, ts));
    const fast = innerLoop(spec, net, task.xs, task.ys, true, lrs);
    const out = spec.net.apply(fast, task.xq, ctx);
    queryOut = tf.keep(tf.clone(out));
    return spec.loss(out, task.yq);
  };
  const { value, grads } = tf.tidy(() => {
    const r = tf.valueAndGrads(f)(toList(meta, keys));
    return { value: r.value, grads: r.grads };
  });
  const loss = value.dataSync()[0]!;
  value.dispose();
  return { loss, queryOut: queryOut!, grads: fromList(keys, grads) };
}

/**
 * First-order MAML (FOMAML / first-order ANIL): adapt without keeping the inner graph, then use
 * ∇_φ L_q(φ) at the adapted weights φ as the meta-gradient for θ.
 */
export function fomamlTaskGrad(spec: InnerLoopSpec, meta: Params, task: Task): TaskGradResult {
  const { net, lrs } = splitMeta(meta);
  if (Object.keys(lrs).length) throw new Error('first-order MAML does not support learned learning rates (use second order)');
  const fast = innerLoop(spec, net, task.xs, task.ys, false);
  const keys = keysOf(fast);
  const ctx = spec.ctx ?? { training: true };
  let queryOut: tf.Tensor | null = null;
  const r = tf.tidy(() =>
    tf.valueAndGrads((...ts: tf.Tensor[]) => {
      const out = spec.net.apply(fromList(keys, ts), task.xq, ctx);
      queryOut = tf.keep(tf.clone(out));
      return spec.loss(out, task.yq);
    })(toList(fast, keys)),
  );
  const adapted = new Set(spec.adaptKeys ?? keys);
  if (spec.steps > 0) for (const k of keys) if (adapted.has(k)) fast[k]!.dispose();
  const loss = r.value.dataSync()[0]!;
  r.value.dispose();
  return { loss, queryOut: queryOut!, grads: fromList(keys, r.grads) };
}

/** Differentiable meta-objective L_q(inner(θ)) as a number (for finite-difference checks). */
export function mamlObjective(spec: InnerLoopSpec, meta: Params, task: Task): number {
  const t = tf.tidy(() => {
    const { net, lrs } = splitMeta(meta);
    const fast = innerLoop(spec, net, task.xs, task.ys, true, lrs);
    return spec.loss(spec.net.apply(fast, task.xq, spec.ctx ?? { training: true }), task.yq);
  });
  const v = t.dataSync()[0]!;
  t.dispose();
  return v;
}
