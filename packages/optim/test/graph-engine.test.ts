/**
 * Optimisation-based learners with engine 'onnxruntime' (each task's inner loop, query loss and
 * meta-gradient as one onnxruntime graph) against the tfjs engine on the same task: MAML second
 * order (2 inner steps), FOMAML, ANIL, Meta-SGD (learned per-parameter rates) and MAML with per-step
 * rates give the same loss, accuracy and meta-gradient; unsupported combinations are refused.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, getLearner, initEngine, relativeL2, type Episode, type TaskParallelLearner } from '@metalearn/core';
import '../src/index.js';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

const SHAPE = [16, 16, 1];
const WAYS = 3;

function episode(rng: Rng): Episode {
  const make = (per: number) => {
    const n = WAYS * per;
    const x = tf.tensor4d(rng.uniformArray(n * 256), [n, ...SHAPE] as [number, number, number, number]);
    return { x, y: Int32Array.from({ length: n }, (_, i) => (i * 2) % WAYS) };
  };
  const support = make(2);
  const query = make(3);
  return { ways: WAYS, shots: 2, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

const base = { backbone: { type: 'conv4', filters: 8 }, ways: WAYS, innerSteps: 2, innerLr: 0.3, metaLr: 0.001 };

describe("optim learners, engine 'onnxruntime'", () => {
  it.each([
    ['maml', {}],
    ['fomaml', {}],
    ['anil', {}],
    ['metasgd', {}],
    ['maml', { perStepLr: true }],
  ] as const)('%s %j: the task meta-gradient matches the tfjs engine', (id, extra) => {
    const rng = new Rng(4);
    const ep = episode(rng);
    const make = (engine: string) => getLearner(id).create({ ...base, ...extra, engine }, { inputShape: SHAPE, seed: 7 }) as unknown as TaskParallelLearner & { dispose(): void };
    const a = make('tfjs');
    const b = make('onnxruntime');
    try {
      const ta = a.taskGradients([ep], 0, a.beginStep([ep]))[0]!;
      const tb = b.taskGradients([ep], 0, b.beginStep([ep]))[0]!;
      expect(Math.abs(ta.loss - tb.loss)).toBeLessThan(1e-4 * Math.max(1, ta.loss));
      expect(tb.correct).toBe(ta.correct);
      expect(Object.keys(tb.grads).sort()).toEqual(Object.keys(ta.grads).sort());
      let checked = 0;
      for (const k of Object.keys(ta.grads)) {
        // conv biases before batch norm have an exactly-zero true gradient (float noise in both)
        if (/conv\.bias$/.test(k)) continue;
        expect(relativeL2(tb.grads[k]!, ta.grads[k]!), k).toBeLessThan(2e-3);
        checked++;
      }
      expect(checked).toBeGreaterThan(8);
    } finally {
      a.dispose();
      b.dispose();
      ep.dispose!();
    }
  });

  it('refuses iMAML, Reptile and non-SGD inner optimisers', () => {
    expect(() => getLearner('imaml').create({ ...base, engine: 'onnxruntime' }, { inputShape: SHAPE, seed: 1 })).toThrow(/'engine' 'onnxruntime' supports maml, fomaml, anil and metasgd/);
    expect(() => getLearner('reptile').create({ ...base, engine: 'onnxruntime' }, { inputShape: SHAPE, seed: 1 })).toThrow(/use engine 'tfjs' for reptile/);
    expect(() => getLearner('maml').create({ ...base, innerOptimizer: 'adam', engine: 'onnxruntime' }, { inputShape: SHAPE, seed: 1 })).toThrow(/needs innerOptimizer 'sgd'/);
  });
});
