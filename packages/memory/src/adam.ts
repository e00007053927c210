/**
 * Adam with global-norm gradient clipping, synchronous and serialisable (moments and step count go
 * into the learner's checkpoint). Small enough to live here; a shared optimiser belongs in core.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tensorToData, dataToTensor, type TensorData } from '@metalearn/core';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** clip the global gradient norm to this value (0 = no clipping) */
  clipNorm?: number;
}

export class Adam {
  private m: Record<string, tf.Tensor> = {};
  private v: Record<string, tf.Tensor> = {};
  t = 0;
  constructor(readonly opt: AdamOptions) {}

  /** Apply one update in place to `params`; returns the (pre-clip) global gradient norm. */
  apply(params: Record<string, tf.Variable>, grads: Record<string, tf.Tensor>): number {
    const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, clipNorm = 0 } = this.opt;
    const names = Object.keys(grads).sort();
    const norm = tf.tidy(() => Math.sqrt(tf.addN(names.map((k) => tf.sum(tf.square(grads[k]!)))).dataSync()[0]!));
    if (!Number.isFinite(norm)) throw new Error(`Adam: gradient norm is ${norm} (non-finite loss or gradient)`);
    const scale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1;
    this.t++;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    for (const k of names) {
      const p = params[k];
      if (!p) throw new Error(`Adam: gradient for unknown parameter '${k}'`);
      const [m, v] = tf.tidy(() => {
        const g = tf.mul(grads[k]!, scale);
        const m0 = this.m[k] ?? tf.zerosLike(p);
        const v0 = this.v[k] ?? tf.zerosLike(p);
        return [tf.add(tf.mul(m0, beta1), tf.mul(g, 1 - beta1)), tf.add(tf.mul(v0, beta2), tf.mul(tf.square(g), 1 - beta2))];
      });
      tf.tidy(() => p.assign(tf.sub(p, tf.div(tf.mul(tf.div(m!, c1), lr), tf.add(tf.sqrt(tf.div(v!, c2)), eps)))));
      this.m[k]?.dispose();
      this.v[k]?.dispose();
      this.m[k] = m!;
      this.v[k] = v!;
    }
    return norm;
  }

  state(): Record<string, TensorData | number> {
    const out: Record<string, TensorData | number> = { t: this.t };
    for (const k of Object.keys(this.m).sort()) {
      out[`m/${k}`] = tensorToData(this.m[k]!);
      out[`v/${k}`] = tensorToData(this.v[k]!);
    }
    return out;
  }

  load(s: Record<string, TensorData | number>): void {
    this.dispose();
    const t = s.t;
    if (typeof t !== 'number') throw new Error(`Adam.load: field 'optimizer.t' must be a number`);
    this.t = t;
    for (const [k, d] of Object.entries(s)) {
      if (k === 't') continue;
      if (typeof d === 'number') throw new Error(`Adam.load: field 'optimizer.${k}' must be a tensor`);
      if (k.startsWith('m/')) this.m[k.slice(2)] = dataToTensor(d);
      else if (k.startsWith('v/')) this.v[k.slice(2)] = dataToTensor(d);
      else throw new Error(`Adam.load: unexpected field 'optimizer.${k}'`);
    }
  }

  dispose(): void {
    for (const t of [...Object.values(this.m), ...Object.values(this.v)]) t.dispose();
    this.m = {};
    this.v = {};
  }
}

let varCounter = 0;
/** A tf.variable name unique in this process (tfjs refuses duplicate variable names). */
export function uniqueVarName(prefix: string): string {
  return `${prefix}#${++varCounter}`;
}
