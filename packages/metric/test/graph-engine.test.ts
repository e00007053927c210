/**
 * ProtoNet with engine 'onnxruntime' (each episode one onnxruntime graph) against the tfjs engine:
 * the same episodes from the same initial weights give the same losses, accuracies, parameters and
 * batch-norm running statistics (up to float rounding), for both distances; same seed → bitwise the
 * same run.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, initEngine, maxRelParamDiff, relativeL2, type Episode } from '@metalearn/core';
import { ProtoNet, type ProtoNetConfig } from '@metalearn/metric';

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
});

const SHAPE = [16, 16, 1];
const base: ProtoNetConfig = {
  backbone: { type: 'conv4', filters: 8 },
  // ε 1e-4: the conv biases before batch norm have a zero true gradient whose float noise Adam
  // (ε 1e-8) would turn into ±lr steps of an engine-dependent sign
  optimizer: { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-4, weightDecay: 0 },
  lrSchedule: { every: 0, factor: 0.5 },
  distance: 'sqeuclidean',
  cosineScale: 10,
  engine: 'tfjs',
};

function episode(rng: Rng, ways: number, shots: number, queries: number): Episode {
  const make = (per: number, shuffle: boolean) => {
    const n = ways * per;
    const y = Int32Array.from({ length: n }, (_, i) => Math.floor(i / per));
    if (shuffle) y.reverse();
    const x = tf.tensor4d(rng.uniformArray(n * 256), [n, ...SHAPE] as [number, number, number, number]);
    return { x, y };
  };
  const support = make(shots, true);
  const query = make(queries, false);
  return { ways, shots, support, query, dispose: () => tf.dispose([support.x, query.x]) };
}

function run(cfg: ProtoNetConfig, steps: number) {
  const l = new ProtoNet(cfg, { inputShape: SHAPE, seed: 5 });
  const rng = new Rng(9);
  const results = [];
  for (let s = 0; s < steps; s++) {
    const batch = [episode(rng, 3, 2, 3), episode(rng, 3, 2, 3)];
    results.push(l.metaTrainStep(batch));
    batch.forEach((e) => e.dispose!());
  }
  const params = l.getParams();
  l.dispose();
  return { results, params };
}

describe("ProtoNet engine 'onnxruntime'", () => {
  // two steps: each step's gradients agree to ~1e-6, but from the third step on a max-pool or ReLU
  // switch triggered by those float differences can change one task's block-1 gradient by a few
  // per cent (seen on this data), which is chaos, not a wrong gradient
  it.each(['sqeuclidean', 'cosine'] as const)('%s: 2 meta-steps match the tfjs engine (losses, accuracies, weights, running statistics)', (distance) => {
    const a = run({ ...base, distance }, 2);
    const b = run({ ...base, distance, engine: 'onnxruntime' }, 2);
    a.results.forEach((r, i) => {
      expect(Math.abs(b.results[i]!.loss - r.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(r.loss)));
      expect(b.results[i]!.accuracy).toBe(r.accuracy);
    });
    expect(Object.keys(a.params).some((k) => k.startsWith('buffer:'))).toBe(true);
    // the conv biases before batch norm have a zero true gradient: each engine's float noise there
    // (~1e-6) becomes Adam steps of its own, so they are left out of the comparison
    const init = run(base, 0).params;
    for (const k of Object.keys(a.params)) {
      if (k.endsWith('.conv.bias')) continue;
      const d = relativeL2(b.params[k]!.data, a.params[k]!.data);
      // biases whose true gradient is (nearly) zero — block 4's batch-norm shift barely changes
      // squared distances — take noise-driven Adam steps, and the running means carry the conv
      // biases: a looser bound there
      expect(d, k).toBeLessThan(k.endsWith('.bias') || k.endsWith('running_mean') ? 1e-2 : 1e-4);
      // and the run did move them
      expect(relativeL2(init[k]!.data, a.params[k]!.data), k).toBeGreaterThan(1e-3);
    }
  });

  it('a backbone without graph rules (1-D convolutions) fails with the engine named', () => {
    const l = new ProtoNet({ ...base, backbone: { type: 'conv1d', filters: [4] } as ProtoNetConfig['backbone'], engine: 'onnxruntime' }, { inputShape: [10, 2], seed: 1 });
    const make = () => ({ x: tf.zeros([2, 10, 2]), y: Int32Array.from([0, 1]) });
    const ep: Episode = { ways: 2, shots: 1, support: make(), query: make() };
    expect(() => l.metaTrainStep([ep])).toThrow(/protonet: engine 'onnxruntime' cannot build the training graph \(.*Conv gradient supports 2-D convolutions only.*\); use engine 'tfjs'/);
    tf.dispose([ep.support.x, ep.query.x]);
    l.dispose();
  });

  it('same seed, same run (bitwise)', () => {
    const a = run({ ...base, engine: 'onnxruntime' }, 2);
    const b = run({ ...base, engine: 'onnxruntime' }, 2);
    expect(a.results.map((r) => r.loss)).toEqual(b.results.map((r) => r.loss));
    expect(maxRelParamDiff(a.params, b.params)).toBe(0);
  });
});
