import * as tf from '@tensorflow/tfjs-core';
import type { Params } from './types.js';

/** A learning rate for one parameter: a number, or a (meta-learned, differentiable) tensor. */
export type LrValue = number | tf.Tensor;

/**
 * A differentiable inner-loop optimiser in the spirit of `higher`'s differentiable optimisers: the
 * update is an ordinary tfjs expression of (params, grads, state), so an outer `tf.grads` can
 * differentiate through it (second order) when the grads were computed with their graph kept.
 */
export interface InnerOptimizer {
  readonly id: string;
  /** fresh per-parameter state (e.g. Adam moments) for the adapted keys */
  init(params: Params): Params;
  /** one update of `params` (only the keys in `grads`) at step `t` (0-based) */
  step(params: Params, grads: Params, state: Params, lr: (key: string) => LrValue, t: number): { params: Params; state: Params };
}

export type InnerOptimizerFactory = (opts: Record<string, number>) => InnerOptimizer;

const registry = new Map<string, InnerOptimizerFactory>();

/** Register an inner optimiser (as `higher.register_optim`). */
export function registerInnerOptimizer(id: string, f: InnerOptimizerFactory): void {
  registry.set(id, f);
}

export function getInnerOptimizer(id: string, opts: Record<string, number> = {}): InnerOptimizer {
  const f = registry.get(id);
  if (!f) throw new Error(`unknown inner optimiser '${id}'; registered: ${[...registry.keys()].sort().join(', ')}`);
  return f(opts);
}

function scaled(g: tf.Tensor, lr: LrValue): tf.Tensor {
  return typeof lr === 'number' ? tf.mul(g, tf.scalar(lr)) : tf.mul(g, lr);
}

/** Plain SGD: p ← p − lr·g (lr may be a learned tensor, as in Meta-SGD). */
export function sgd(): InnerOptimizer {
  return {
    id: 'sgd',
    init: () => ({}),
    step(params, grads, state, lr) {
      const out: Params = { ...params };
      for (const k of Object.keys(grads)) out[k] = tf.sub(params[k]!, scaled(grads[k]!, lr(k)));
      return { params: out, state };
    },
  };
}

/**
 * Differentiable Adam. The denominator is √(v̂ + ε²) rather than √v̂ + ε so that it stays
 * differentiable (to second order) where v = 0.
 */
export function adam(opts: Record<string, number> = {}): InnerOptimizer {
  const b1 = opts.beta1 ?? 0.9;
  const b2 = opts.beta2 ?? 0.999;
  const eps = opts.eps ?? 1e-8;
  return {
    id: 'adam',
    init(params) {
      const s: Params = {};
      for (const k of Object.keys(params)) {
        s[`m:${k}`] = tf.zerosLike(params[k]!);
        s[`v:${k}`] = tf.zerosLike(params[k]!);
      }
      return s;
    },
    step(params, grads, state, lr, t) {
      const out: Params = { ...params };
      const ns: Params = { ...state };
      const c1 = 1 - Math.pow(b1, t + 1);
      const c2 = 1 - Math.pow(b2, t + 1);
      for (const k of Object.keys(grads)) {
        const g = grads[k]!;
        const m0 = state[`m:${k}`] ?? tf.zerosLike(g);
        const v0 = state[`v:${k}`] ?? tf.zerosLike(g);
        const m = tf.add(tf.mul(m0, b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(v0, b2), tf.mul(tf.square(g), 1 - b2));
        const upd = tf.div(tf.div(m, c1), tf.sqrt(tf.add(tf.div(v, c2), eps * eps)));
        out[k] = tf.sub(params[k]!, scaled(upd, lr(k)));
        ns[`m:${k}`] = m;
        ns[`v:${k}`] = v;
      }
      return { params: out, state: ns };
    },
  };
}

registerInnerOptimizer('sgd', () => sgd());
registerInnerOptimizer('adam', (o) => adam(o));
