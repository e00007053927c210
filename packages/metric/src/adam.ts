import * as tf from '@tensorflow/tfjs-core';
import { dataToTensor, tensorToData, type TensorData } from '@metalearn/core';

export type TensorMap = Record<string, tf.Tensor>;

export interface AdamOptions {
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  /** L2 weight decay added to the gradient (PyTorch Adam's `weight_decay`) */
  weightDecay: number;
}

export const ADAM_DEFAULTS: AdamOptions = { lr: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 };

/**
 * Functional Adam (Kingma & Ba 2015, bias-corrected, as torch.optim.Adam) over a map of named
 * parameter tensors. `step` returns new parameter tensors and disposes the old ones; the moments
 * are owned here and saved with {@link state} so a resumed run continues bit-for-bit.
 */
export class Adam {
  readonly opts: AdamOptions;
  private m: TensorMap = {};
  private v: TensorMap = {};
  private t = 0;

  constructor(opts: Partial<AdamOptions> = {}) {
    this.opts = { ...ADAM_DEFAULTS, ...opts };
  }

  get stepCount(): number {
    return this.t;
  }

  /**
   * One update with learning rate `lr` (default: the configured one). Keys of `grads` missing from
   * `params` are an error; params without a gradient are returned unchanged.
   */
  step(params: TensorMap, grads: TensorMap, lr = this.opts.lr): TensorMap {
    const { beta1, beta2, epsilon, weightDecay } = this.opts;
    this.t++;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    const out: TensorMap = { ...params };
    for (const k of Object.keys(grads).sort()) {
      const p = params[k];
      if (!p) throw new Error(`Adam.step: gradient for unknown parameter '${k}'`);
      const g0 = grads[k]!;
      const [np, nm, nv] = tf.tidy(() => {
        const g = weightDecay > 0 ? tf.add(g0, tf.mul(p, weightDecay)) : g0;
        const m0 = this.m[k] ?? tf.zerosLike(p);
        const v0 = this.v[k] ?? tf.zerosLike(p);
        const m = tf.add(tf.mul(m0, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(v0, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), epsilon);
        const upd = tf.div(tf.mul(m, lr / bc1), denom);
        return [tf.sub(p, upd), m, v];
      });
      this.m[k]?.dispose();
      this.v[k]?.dispose();
      this.m[k] = nm!;
      this.v[k] = nv!;
      p.dispose();
      out[k] = np!;
    }
    return out;
  }

  /** Moments and step count, JSON-able (keys `m/<param>`, `v/<param>`, `t`). */
  state(): Record<string, TensorData | number> {
    const s: Record<string, TensorData | number> = { t: this.t };
    for (const k of Object.keys(this.m).sort()) {
      s[`m/${k}`] = tensorToData(this.m[k]!);
      s[`v/${k}`] = tensorToData(this.v[k]!);
    }
    return s;
  }

  load(s: Record<string, TensorData | number>): void {
    this.disposeMoments();
    const t = s['t'];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) throw new Error(`Adam.load: optimiser state needs an integer step count 't', got ${JSON.stringify(t)}`);
    this.t = t;
    for (const [key, val] of Object.entries(s)) {
      if (key === 't') continue;
      const slash = key.indexOf('/');
      const kind = key.slice(0, slash);
      const name = key.slice(slash + 1);
      if ((kind !== 'm' && kind !== 'v') || typeof val === 'number') throw new Error(`Adam.load: unexpected optimiser state entry '${key}'`);
      (kind === 'm' ? this.m : this.v)[name] = dataToTensor(val);
    }
  }

  private disposeMoments(): void {
    for (const t of Object.values(this.m)) t.dispose();
    for (const t of Object.values(this.v)) t.dispose();
    this.m = {};
    this.v = {};
  }

  dispose(): void {
    this.disposeMoments();
    this.t = 0;
  }
}

/** Step learning-rate schedule: `lr · factor^floor(iteration / every)` (every = 0: constant). */
export function stepDecayLr(lr: number, iteration: number, every: number, factor = 0.5): number {
  if (every <= 0) return lr;
  return lr * factor ** Math.floor(iteration / every);
}
