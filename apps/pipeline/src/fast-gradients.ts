/**
 * Faster formulations of three engine gradients, for the wasm backend.
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

function pair(v: unknown): [number, number] {
  if (Array.isArray(v)) return [v[0] as number, (v[1] ?? v[0]) as number];
  return [v as number, v as number];
}

let applied = false;

/** Replace the Sum, Mean and MaxPool gradients with the fast forms (idempotent). Call after initEngine(). */
export function applyFastGradients(): void {
  if (applied) return;
  const engineMaxPool = tf.getGradient('MaxPool');
  if (!engineMaxPool) throw new Error('applyFastGradients: call initEngine() first (no MaxPool gradient registered)');
  const configs: GradConfig[] = [
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
        if (!tiled) return engineMaxPool.gradFunc(dy, saved, attrs);
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
            const cnt = tf.sum(mask, [2, 4], true);
            const dx6 = tf.mul(mask, tf.div(tf.reshape(dy, [n, oh, 1, ow, 1, c]), cnt));
            const dx = tf.reshape(dx6, [n, oh * kh, ow * kw, c]);
            return oh * kh === h && ow * kw === w ? dx : tf.pad(dx, [[0, 0], [0, h - oh * kh], [0, w - ow * kw], [0, 0]]);
          },
        };
      }) as GradConfig['gradFunc'],
    },
  ];
  for (const c of configs) tf.registerGradient(c);
  applied = true;
}
