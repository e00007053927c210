import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Subject, bufferCount, lastValueFrom, take, takeUntil, toArray } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Checkpoint, Episode, FewShotClassifier, LabeledSet, MetaLearner, StepResult } from '../contracts.js';
import { NonFiniteLossError, checkpointEvery, evaluate, evaluateEvery, metaTrain, paced } from './operators.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** 2-way episodes of 1-D points: class c sits at x = c (+ small offset). */
function episode(i: number): Episode {
  const s = tf.tensor2d([[0], [1]]);
  const q = tf.tensor2d([[0.1 + (i % 3) * 0.01], [0.9], [0.2], [1.2]]);
  return { ways: 2, shots: 1, support: { x: s, y: Int32Array.from([0, 1]) }, query: { x: q, y: Int32Array.from([0, 1, 0, 1]) } };
}

/** Nearest-support learner; `losses` scripts what metaTrainStep reports. */
class FakeLearner implements MetaLearner<{}> {
  readonly id = 'fake';
  readonly family = 'metric' as const;
  readonly config = {};
  steps = 0;
  constructor(private losses: (i: number) => number = (i) => 1 / (i + 1)) {}
  metaTrainStep(batch: Episode[]): StepResult {
    this.steps++;
    expect(batch.every((e) => !e.support.x.isDisposed)).toBe(true);
    return { loss: this.losses(this.steps), accuracy: 0.5 };
  }
  adapt(support: LabeledSet, ways: number): FewShotClassifier {
    const protos = tf.keep(support.x.clone());
    return {
      predict: (x) => tf.tidy(() => tf.neg(tf.squaredDifference(x, tf.reshape(protos, [1, ways])))),
      toOnnx: () => {
        throw new Error('not needed');
      },
      dispose: () => protos.dispose(),
    };
  }
  state(): Checkpoint {
    return { format: 'metalearn-checkpoint', version: 1, learner: 'fake', config: {}, params: {}, progress: { steps: this.steps } };
  }
  load(): void {}
  dispose(): void {}
}

describe('rx operators', () => {
  it('trains, evaluates every k, checkpoints every m, and disposes every episode tensor', async () => {
    const learner = new FakeLearner();
    const saved: { path: string; steps: number }[] = [];
    const before = tf.memory().numTensors;
    const events = await lastValueFrom(
      paced(episode).pipe(
        bufferCount(2),
        metaTrain(learner),
        take(6),
        evaluateEvery(3, learner, () => [episode(0), episode(1)]),
        checkpointEvery(2, {
          path: (ev) => `ck-${ev.iteration}`,
          state: () => learner.state(),
          save: async (path, c) => {
            await new Promise((r) => setTimeout(r, 5));
            saved.push({ path, steps: c.progress!.steps! });
          },
        }),
        toArray(),
      ),
    );
    expect(events.map((e) => e.iteration)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.episodes)).toEqual([2, 4, 6, 8, 10, 12]);
    expect(events.filter((e) => e.val).map((e) => e.iteration)).toEqual([3, 6]);
    expect(events[2]!.val!.mean).toBeCloseTo(1);
    expect(events[2]!.val!.n).toBe(2);
    // the snapshot is taken when the event passes, so it matches the iteration even with async writes
    expect(saved).toEqual([
      { path: 'ck-2', steps: 2 },
      { path: 'ck-4', steps: 4 },
      { path: 'ck-6', steps: 6 },
    ]);
    expect(events[1]!.checkpoint).toBe('ck-2');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('evaluate gives mean ± CI over episodes and supports async scorers', async () => {
    const learner = new FakeLearner();
    const accs = [1, 0.5, 0.75, 0.75];
    const before = tf.memory().numTensors;
    const r = await lastValueFrom(
      evaluate(learner, [0, 1, 2, 3].map(episode), { scorer: async (_ep, i) => accs[i]! }),
    );
    expect(r.accuracies).toEqual(accs);
    expect(r.mean).toBeCloseTo(0.75);
    const std = Math.sqrt((0.0625 + 0.0625) / 3);
    expect(r.ci95).toBeCloseTo((1.96 * std) / 2);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a non-finite loss ends the stream with a clear error', async () => {
    const learner = new FakeLearner((i) => (i === 3 ? NaN : 1));
    const p = lastValueFrom(paced(episode).pipe(bufferCount(1), metaTrain(learner), take(10)));
    await expect(p).rejects.toBeInstanceOf(NonFiniteLossError);
    await expect(p).rejects.toThrow(/loss is NaN at iteration 3/);
  });

  it('paced yields to the event loop so a stop signal ends an infinite stream', async () => {
    const learner = new FakeLearner();
    const stop$ = new Subject<void>();
    setTimeout(() => stop$.next(), 30);
    const events = await lastValueFrom(paced(episode).pipe(bufferCount(1), metaTrain(learner), takeUntil(stop$), toArray()));
    expect(events.length).toBeGreaterThan(0);
    expect(learner.steps).toBe(events.length);
  });
});
