import * as tf from '@tensorflow/tfjs-core';
import type { Params } from './types.js';

/** Sorted keys: the canonical order used whenever params are flattened to a list. */
export function keysOf(p: Params): string[] {
  return Object.keys(p).sort();
}

export function toList(p: Params, keys: string[]): tf.Tensor[] {
  return keys.map((k) => {
    const t = p[k];
    if (!t) throw new Error(`missing parameter '${k}'`);
    return t;
  });
}

export function fromList(keys: string[], ts: tf.Tensor[]): Params {
  const out: Params = {};
  keys.forEach((k, i) => (out[k] = ts[i]!));
  return out;
}

export function mapParams(p: Params, f: (t: tf.Tensor, k: string) => tf.Tensor): Params {
  const out: Params = {};
  for (const k of keysOf(p)) out[k] = f(p[k]!, k);
  return out;
}

/** sum_k <a_k, b_k> over the keys of `a` */
export function dotParams(a: Params, b: Params): tf.Scalar {
  return tf.tidy(() => {
    let s: tf.Tensor = tf.scalar(0);
    for (const k of keysOf(a)) s = tf.add(s, tf.sum(tf.mul(a[k]!, b[k]!)));
    return s as tf.Scalar;
  });
}

export function axpy(alpha: number, x: Params, y: Params): Params {
  return mapParams(y, (t, k) => tf.add(t, tf.mul(x[k]!, alpha)));
}

export function disposeParams(...ps: (Params | undefined)[]): void {
  for (const p of ps) if (p) for (const t of Object.values(p)) t.dispose();
}

export function keepParams(p: Params): Params {
  for (const t of Object.values(p)) tf.keep(t);
  return p;
}

export function cloneParams(p: Params): Params {
  return mapParams(p, (t) => tf.clone(t));
}

export function numel(p: Params): number {
  return Object.values(p).reduce((s, t) => s + t.size, 0);
}

/** L2 norm of all tensors together, as a number */
export function normOf(p: Params): number {
  const t = dotParams(p, p);
  const v = Math.sqrt(t.dataSync()[0]!);
  t.dispose();
  return v;
}
