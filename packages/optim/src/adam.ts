import * as tf from '@tensorflow/tfjs-core';
import type { TensorData } from '@metalearn/core';
import { tensorToData, dataToTensor } from '@metalearn/core';
import type { Params } from './types.js';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** clip the global gradient norm to this value (0 or absent: no clipping) */
  clipNorm?: number;
}

/**
 * Functional Adam for the outer (meta) update. Parameters are plain tensors; `step` returns new
 * parameter tensors (the caller disposes the old ones). State (moments + step count) round-trips
 * through `state()` / `load()` for checkpoints.
 */
export class Adam {
  private m: Params = {};
  private v: Params = {};
  t = 0;
  constructor(public opts: AdamOptions) {}

  step(params: Params, grads: Params): Params {
    const b1 = this.opts.beta1 ?? 0.9;
    const b2 = this.opts.beta2 ?? 0.999;
    const eps = this.opts.eps ?? 1e-8;
    this.t++;
    let scale = 1;
    if (this.opts.clipNorm && this.opts.clipNorm > 0) {
      const nt = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
      const n = Math.sqrt(nt.dataSync()[0]!);
      nt.dispose();
      if (n > this.opts.clipNorm) scale = this.opts.clipNorm / n;
    }
    const c1 = 1 - Math.pow(b1, this.t);
    const c2 = 1 - Math.pow(b2, this.t);
    const out: Params = {};
    for (const k of Object.keys(params)) {
      const g0 = grads[k];
      if (!g0) {
        out[k] = tf.clone(params[k]!);
        continue;
      }
      const [p, m, v] = tf.tidy(() => {
        const g = scale === 1 ? g0 : tf.mul(g0, scale);
        const m = tf.add(tf.mul(this.m[k] ?? tf.zerosLike(g), b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(this.v[k] ?? tf.zerosLike(g), b2), tf.mul(tf.square(g), 1 - b2));
        const upd = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        return [tf.sub(params[k]!, tf.mul(upd, this.opts.lr)), m, v];
      });
      this.m[k]?.dispose();
      this.v[k]?.dispose();
      this.m[k] = m!;
      this.v[k] = v!;
      out[k] = p!;
    }
    return out;
  }

  state(): Record<string, TensorData | number> {
    const s: Record<string, TensorData | number> = { t: this.t, lr: this.opts.lr };
    for (const k of Object.keys(this.m).sort()) {
      s[`m:${k}`] = tensorToData(this.m[k]!);
      s[`v:${k}`] = tensorToData(this.v[k]!);
    }
    return s;
  }

  load(s: Record<string, TensorData | number>): void {
    this.dispose();
    const t = s.t;
    if (typeof t !== 'number') throw new Error('optimizer state: field "t" (step count) missing or not a number');
    this.t = t;
    if (typeof s.lr === 'number') this.opts.lr = s.lr;
    for (const [key, val] of Object.entries(s)) {
      if (typeof val === 'number') continue;
      if (key.startsWith('m:')) this.m[key.slice(2)] = dataToTensor(val);
      else if (key.startsWith('v:')) this.v[key.slice(2)] = dataToTensor(val);
      else throw new Error(`optimizer state: unexpected field '${key}'`);
    }
  }

  dispose(): void {
    for (const t of [...Object.values(this.m), ...Object.values(this.v)]) t.dispose();
    this.m = {};
    this.v = {};
  }
}
