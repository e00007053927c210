import * as tf from '@tensorflow/tfjs-core';
import { Observable } from 'rxjs';
import { Rng } from '@metalearn/core';
import { DataError } from './errors.js';
import { episodeRng } from './episodes.js';

export interface SinusoidOptions {
  amplitude?: [number, number];
  phase?: [number, number];
  xRange?: [number, number];
}

/** A sinusoid regression task y = A sin(x - phase) and the x's sampled for it (serialisable). */
export interface SinusoidEpisodeDescription {
  amplitude: number;
  phase: number;
  supportX: number[];
  queryX: number[];
}

export interface RegressionSet {
  /** [n, 1] */
  x: tf.Tensor2D;
  /** [n, 1] */
  y: tf.Tensor2D;
}

export interface RegressionEpisode {
  shots: number;
  support: RegressionSet;
  query: RegressionSet;
  description: SinusoidEpisodeDescription;
  dispose(): void;
}

/** MAML's sinusoid regression family: amplitude 0.1-5, phase 0-pi, x uniform in [-5, 5]. */
export class SinusoidTasks {
  readonly kind = 'regression' as const;
  readonly name = 'sinusoid';
  readonly featureShape: readonly number[] = Object.freeze([1]);
  readonly amplitude: [number, number];
  readonly phase: [number, number];
  readonly xRange: [number, number];

  constructor(opts: SinusoidOptions = {}) {
    this.amplitude = opts.amplitude ?? [0.1, 5];
    this.phase = opts.phase ?? [0, Math.PI];
    this.xRange = opts.xRange ?? [-5, 5];
    for (const [k, r] of [['amplitude', this.amplitude], ['phase', this.phase], ['xRange', this.xRange]] as const) {
      if (!Array.isArray(r) || r.length !== 2 || !(r[0] <= r[1])) throw new DataError(`sinusoid: ${k} = ${JSON.stringify(r)}, expected [low, high] with low <= high`);
    }
  }

  value(d: { amplitude: number; phase: number }, x: number): number {
    return d.amplitude * Math.sin(x - d.phase);
  }

  describe(shots: number, queries: number, rng: Rng): SinusoidEpisodeDescription {
    if (!Number.isInteger(shots) || shots < 1) throw new DataError(`sinusoid: shots = ${shots}, expected an integer >= 1`);
    if (!Number.isInteger(queries) || queries < 0) throw new DataError(`sinusoid: queries = ${queries}, expected an integer >= 0`);
    const amplitude = rng.uniform(...this.amplitude);
    const phase = rng.uniform(...this.phase);
    const xs = (n: number) => Array.from({ length: n }, () => rng.uniform(...this.xRange));
    return { amplitude, phase, supportX: xs(shots), queryX: xs(queries) };
  }

  materialize(d: SinusoidEpisodeDescription): RegressionEpisode {
    const set = (xs: number[]): RegressionSet => ({
      x: tf.tensor2d(Float32Array.from(xs), [xs.length, 1]),
      y: tf.tensor2d(Float32Array.from(xs, (x) => this.value(d, x)), [xs.length, 1]),
    });
    const support = set(d.supportX);
    const query = set(d.queryX);
    return {
      shots: d.supportX.length,
      support,
      query,
      description: d,
      dispose() {
        for (const t of [support.x, support.y, query.x, query.y]) t.dispose();
      },
    };
  }

  /** Episode `index` of a seed: the same on any machine, independent of other indices. */
  episode(shots: number, queries: number, seed: number | string, index: number): RegressionEpisode {
    return this.materialize(this.describe(shots, queries, episodeRng(seed, index)));
  }

  /** Cold deterministic stream of regression episodes (synchronous; stops on unsubscribe). */
  episodes$(spec: { shots: number; queries: number }, seed: number | string, opts: { count?: number; start?: number } = {}): Observable<RegressionEpisode> {
    return new Observable<RegressionEpisode>((sub) => {
      const start = opts.start ?? 0;
      const end = opts.count === undefined ? Infinity : start + opts.count;
      for (let i = start; i < end && !sub.closed; i++) sub.next(this.episode(spec.shots, spec.queries, seed, i));
      if (!sub.closed) sub.complete();
    });
  }
}
