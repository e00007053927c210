/**
 * Faster formulations of some engine gradients, for the wasm backend.
 *
 * Measured here (tfjs-backend-wasm 4.22, 2 cores): `tf.broadcastTo` / `tf.tile` of a [1,1,1,32]
 * tensor to [120,28,28,32] takes ~1 s and a broadcasting `tf.equal` on [120,14,2,14,2,32] vs
 * [120,14,1,14,1,32] ~2 s (both fall back to slow generic paths), while a broadcasting `tf.add` /
 * `tf.sub` of the same shapes takes ~50-70 ms. The engine's Sum/Mean gradients use broadcastTo and
 * its max-pool gradient uses a broadcasting equal, which made one Conv-4 ProtoNet step ~10x slower
 * than its convolutions.
 *
 * The replacements compute the same values with broadcasting add/sub (and `sign` for the max mask:
 * inside a pooling window y ≥ x, so y − x = 0 exactly where x is the max), are built from ops that
 * have engine gradients (so gradients of gradients still work), and fall back to the engine's
 * gradient for overlapping or padded pooling windows. They are a workaround owned by the app; once
 * the engine adopts these formulations this file can go.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, NamedAttrMap, Tensor } from '@tensorflow/tfjs-core';

function keepShape(xShape: number[], axis: unknown): { axes: number[]; keep: number[] } {
  const axes = tf.util.parseAxisParam(axis as number | number[], xShape);
  return { axes, keep: xShape.map((d, i) => (axes.includes(i) ? 1 : d)) };
}

/** broadcast `t` to `shape` with a broadcasting add (fast on wasm, unlike broadcastTo/tile) */
function expandTo(t: Tensor, shape: number[]): Tensor {
  return tf.add(tf.zeros(shape, 'float32'), t);
}

const f32 = (t: Tensor): Tensor => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));

/**
 * Sum `g` over its broadcast axes so that it gets `shape` (same values as the engine's reduceTo).
 * When the reduced axes are a leading block (per-channel broadcasting, as in batch norm), the sum
 * runs on a [rows, rest] reshape along axis 0, ~5x faster on wasm than a multi-axis sum.
 */
export function fastReduceTo(g: Tensor, shape: readonly number[]): Tensor {
  if (tf.util.arraysEqual(g.shape, shape as number[])) return tf.reshape(g, shape as number[]);
  const s = [...shape];
  while (s.length < g.rank) s.unshift(1);
  let lead = 0;
  while (lead < g.rank && s[lead] === 1 && g.shape[lead] !== 1) lead++;
  const rest = g.shape.slice(lead);
  if (lead > 0 && rest.every((d, i) => d === s[lead + i])) {
    const rows = g.shape.slice(0, lead).reduce((a, b) => a * b, 1);
    return tf.reshape(tf.sum(tf.reshape(g, [rows, rest.reduce((a, b) => a * b, 1)]), 0), shape as number[]);
  }
  const axes = tf.broadcast_util.getReductionAxes(s, g.shape);
  const r = axes.length > 0 ? tf.sum(g, axes) : g;
  return tf.reshape(r, shape as number[]);
}

function pair(v: unknown): [number, number] {
  if (Array.isArray(v)) return [v[0] as number, (v[1] ?? v[0]) as number];
  return [v as number, v as number];
}

let ours: GradConfig | undefined;

/**
 * Replace the Add, Sub, Multiply, RealDiv, Sum, Mean and MaxPool gradients with the fast forms
 * (idempotent). Call after initEngine().
 */
export function applyFastGradients(): void {
  const current = tf.getGradient('MaxPool');
  if (!current) throw new Error('applyFastGradients: call initEngine() first (no MaxPool gradient registered)');
  if (ours && current.gradFunc === ours.gradFunc) return; // already active
  const fallback = current;
  const configs: GradConfig[] = [
    {
      kernelName: 'Add',
      inputsToSave: ['a', 'b'],
      gradFunc: ((dy: Tensor, [a, b]: Tensor[]) => ({ a: () => fastReduceTo(dy, a!.shape), b: () => fastReduceTo(dy, b!.shape) })) as GradConfig['gradFunc'],
    },
    {
      kernelName: 'Sub',
      inputsToSave: ['a', 'b'],
      gradFunc: ((dy: Tensor, [a, b]: Tensor[]) => ({ a: () => fastReduceTo(dy, a!.shape), b: () => fastReduceTo(tf.neg(dy), b!.shape) })) as GradConfig['gradFunc'],
    },
    {
      kernelName: 'Multiply',
      inputsToSave: ['a', 'b'],
      gradFunc: ((dy: Tensor, [a, b]: Tensor[]) => ({
        a: () => fastReduceTo(tf.mul(dy, f32(b!)), a!.shape),
        b: () => fastReduceTo(tf.mul(dy, f32(a!)), b!.shape),
      })) as GradConfig['gradFunc'],
    },
    {
      kernelName: 'RealDiv',
      inputsToSave: ['a', 'b'],
      gradFunc: ((dy: Tensor, [a, b]: Tensor[]) => ({
        a: () => fastReduceTo(tf.div(dy, f32(b!)), a!.shape),
        b: () => fastReduceTo(tf.neg(tf.div(tf.mul(dy, f32(a!)), tf.square(f32(b!)))), b!.shape),
      })) as GradConfig['gradFunc'],
    },
    {
      kernelName: 'Sum',
      inputsToSave: ['x'],
      gradFunc: ((dy: Tensor, [x]: Tensor[], attrs: NamedAttrMap) => ({
        x: () => expandTo(tf.reshape(dy, keepShape(x!.shape, attrs['axis']).keep), x!.shape),
      })) as GradConfig['gradFunc'],
    },
    {
      kernelName: 'Mean',
      inputsToSave: ['x'],
      gradFunc: ((dy: Tensor, [x]: Tensor[], attrs: NamedAttrMap) => ({
        x: () => {
          const { axes, keep } = keepShape(x!.shape, attrs['axis']);
          const n = axes.reduce((p, a) => p * x!.shape[a]!, 1);
          return expandTo(tf.div(tf.reshape(dy, keep), n), x!.shape);
        },
      })) as GradConfig['gradFunc'],
    },
    {
      kernelName: 'MaxPool',
      inputsToSave: ['x'],
      outputsToSave: [true],
      gradFunc: ((dy: Tensor, saved: Tensor[], attrs: NamedAttrMap) => {
        const [x, y] = saved as [tf.Tensor4D, tf.Tensor4D];
        const [kh, kw] = pair(attrs['filterSize']);
        const [sh, sw] = pair(attrs['strides']);
        const tiled = kh === sh && kw === sw && attrs['pad'] === 'valid' && attrs['dimRoundingMode'] == null;
        if (!tiled) return fallback.gradFunc(dy, saved, attrs);
        return {
          x: () => {
            const [n, h, w, c] = x.shape;
            const oh = Math.floor(h / kh);
            const ow = Math.floor(w / kw);
            const xc = oh * kh === h && ow * kw === w ? x : tf.slice(x, [0, 0, 0, 0], [n, oh * kh, ow * kw, c]);
            const x6 = tf.reshape(xc, [n, oh, kh, ow, kw, c]);
            const y6 = tf.reshape(y, [n, oh, 1, ow, 1, c]);
            // 1 where x is the window max (y − x = 0), else 0; ties share the gradient evenly
            const mask = tf.sub(1, tf.sign(tf.sub(y6, x6)));
            // window counts with a pooling kernel (a 6-D sum over axes [2, 4] is slow on wasm)
            const cnt = tf.reshape(tf.mul(tf.avgPool(tf.reshape(mask, [n, oh * kh, ow * kw, c]) as tf.Tensor4D, [kh, kw], [kh, kw], 'valid'), kh * kw), [n, oh, 1, ow, 1, c]);
            const dx6 = tf.mul(mask, tf.div(tf.reshape(dy, [n, oh, 1, ow, 1, c]), cnt));
            const dx = tf.reshape(dx6, [n, oh * kh, ow * kw, c]);
            return oh * kh === h && ow * kw === w ? dx : tf.pad(dx, [[0, 0], [0, h - oh * kh], [0, w - ow * kw], [0, 0]]);
          },
        };
      }) as GradConfig['gradFunc'],
    },
  ];
  for (const c of configs) tf.registerGradient(c);
  ours = configs.find((c) => c.kernelName === 'MaxPool');
}
