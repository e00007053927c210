/**
 * RxJS operators for the meta-training stream:
 *
 * ```
 * paced(i => sampleEpisode(i))            Observable<Episode>   (yields to the event loop between items)
 *   .pipe(bufferCount(metaBatch),         Observable<Episode[]>
 *         metaTrain(learner),             Observable<TrainEvent> (episodes disposed after the step)
 *         takeUntil(stop$),               budget / Ctrl-C
 *         evaluateEvery(k, learner, val), adds val accuracy ± 95% CI
 *         checkpointEvery(m, {path, state}))
 * evaluate(learner, testEpisodes$)        Observable<EvalResult> (one value)
 * ```
 *
 * `takeUntil` sits right after `metaTrain` rather than at the very end: cutting the stream there lets
 * an evaluation or checkpoint write that is already under way finish before the stream completes, and
 * it never flushes a partial meta-batch out of `bufferCount` (which would break determinism).
 *
 * Every tensor of an episode is disposed once the step (or the evaluation of that episode) is done.
 */
import {
  Observable,
  concatMap,
  defer,
  from,
  map,
  of,
  toArray,
  type MonoTypeOperatorFunction,
  type ObservableInput,
  type OperatorFunction,
} from 'rxjs';
import type { Checkpoint, Episode, FewShotClassifier, MetaLearner, StepResult } from '../contracts.js';
import { accuracy, argmaxRows, meanCI, type MeanCI } from '../metrics.js';
import { saveCheckpoint } from '../checkpoint.js';

/** Dispose every tensor an episode holds (its own `dispose()` when it has one). */
export function disposeEpisode(ep: Episode): void {
  if (ep.dispose) ep.dispose();
  else {
    ep.support.x.dispose();
    ep.query.x.dispose();
  }
}

/**
 * A lazy source: emits `next(start)`, `next(start + 1)`, ... (up to `count` items, default unbounded),
 * one per macrotask (setImmediate), so that timers, signals and I/O are served between items and an
 * unsubscribe stops production at once. Items are produced only as they are emitted.
 */
export function paced<T>(next: (i: number) => T, opts: { start?: number; count?: number } = {}): Observable<T> {
  const start = opts.start ?? 0;
  const end = opts.count === undefined ? Infinity : start + opts.count;
  return new Observable<T>((sub) => {
    let i = start;
    let handle: NodeJS.Immediate | undefined;
    const tick = (): void => {
      handle = undefined;
      if (sub.closed) return;
      if (i >= end) {
        sub.complete();
        return;
      }
      let v: T;
      try {
        v = next(i++);
      } catch (e) {
        sub.error(e);
        return;
      }
      sub.next(v);
      if (!sub.closed) handle = setImmediate(tick);
    };
    handle = setImmediate(tick);
    return () => {
      if (handle) clearImmediate(handle);
    };
  });
}

/** Validation / test result: mean accuracy over episodes with its 95% confidence interval. */
export interface EvalResult extends MeanCI {
  /** per-episode query accuracies, in episode order */
  accuracies: number[];
}

export interface TrainEvent extends StepResult {
  /** meta-updates done so far (1-based; continues across --resume) */
  iteration: number;
  /** training episodes consumed so far */
  episodes: number;
  /** wall time of this step in ms (not deterministic: keep it out of reproducible logs) */
  stepMs: number;
  /** validation result, on iterations where evaluateEvery ran */
  val?: EvalResult;
  /** checkpoint path written at this iteration */
  checkpoint?: string;
}

/** A meta-training step produced a NaN/Infinite loss. */
export class NonFiniteLossError extends Error {
  constructor(
    readonly iteration: number,
    readonly loss: number,
  ) {
    super(
      `meta-training diverged: loss is ${loss} at iteration ${iteration}. ` +
        `Lower the learning rate (or check the data); the last good checkpoint was kept.`,
    );
    this.name = 'NonFiniteLossError';
  }
}

export interface MetaTrainOptions {
  /** iterations already done (resume) */
  startIteration?: number;
  /** episodes already seen (resume) */
  startEpisodes?: number;
}

/**
 * One `learner.metaTrainStep(batch)` per meta-batch. The batch's episodes are disposed after the step
 * (also when it throws). A non-finite loss ends the stream with {@link NonFiniteLossError}.
 */
export function metaTrain(learner: MetaLearner, opts: MetaTrainOptions = {}): OperatorFunction<Episode[], TrainEvent> {
  return (source) =>
    defer(() => {
      let iteration = opts.startIteration ?? 0;
      let episodes = opts.startEpisodes ?? 0;
      return source.pipe(
        map((batch): TrainEvent => {
          const t0 = performance.now();
          let r: StepResult;
          try {
            r = learner.metaTrainStep(batch);
          } finally {
            for (const ep of batch) disposeEpisode(ep);
          }
          iteration++;
          episodes += batch.length;
          if (!Number.isFinite(r.loss)) throw new NonFiniteLossError(iteration, r.loss);
          return { ...r, iteration, episodes, stepMs: performance.now() - t0 };
        }),
      );
    });
}

/** Query accuracy of a classifier on an episode's query set (tfjs forward). */
export function classifierAccuracy(clf: FewShotClassifier, ep: Episode): number {
  const logits = clf.predict(ep.query.x);
  try {
    const [n, ways] = logits.shape as [number, number];
    return accuracy(argmaxRows(logits.dataSync(), n, ways), ep.query.y);
  } finally {
    logits.dispose();
  }
}

/** Adapt on the support set, classify the query set, return the query accuracy. */
export function episodeAccuracy(learner: MetaLearner, ep: Episode): number {
  const clf = learner.adapt(ep.support, ep.ways);
  try {
    return classifierAccuracy(clf, ep);
  } finally {
    clf.dispose();
  }
}

/** Scores one episode; may be async (e.g. onnxruntime). Must not dispose the episode. */
export type EpisodeScorer = (ep: Episode, index: number) => number | Promise<number>;

export interface EvaluateOptions {
  /** default: {@link episodeAccuracy} with the learner (tfjs) */
  scorer?: EpisodeScorer;
  /** called after each scored episode */
  onEpisode?: (index: number, acc: number) => void;
}

/**
 * Mean query accuracy ± 95% CI over the episodes (one value, then complete). Episodes are scored one
 * after the other and disposed after use; a synchronous scorer keeps the whole evaluation synchronous.
 */
export function evaluate(
  learner: MetaLearner,
  episodes: ObservableInput<Episode>,
  opts: EvaluateOptions = {},
): Observable<EvalResult> {
  const scorer: EpisodeScorer = opts.scorer ?? ((ep) => episodeAccuracy(learner, ep));
  return defer(() => {
    let index = 0;
    return from(episodes).pipe(
      concatMap((ep) => {
        const i = index++;
        let r: number | Promise<number>;
        try {
          r = scorer(ep, i);
        } catch (e) {
          disposeEpisode(ep);
          throw e;
        }
        const done = (acc: number): number => {
          opts.onEpisode?.(i, acc);
          return acc;
        };
        if (typeof r === 'number') {
          disposeEpisode(ep);
          return of(done(r));
        }
        return from(r.finally(() => disposeEpisode(ep)).then(done));
      }),
      toArray(),
      map((accs): EvalResult => ({ ...meanCI(accs), accuracies: accs })),
    );
  });
}

/**
 * Every `k` iterations, evaluate on a fresh copy of the validation episodes (`valEpisodes()` is called
 * each time, so a seeded factory gives the same episodes every time) and attach the result as `val`.
 */
export function evaluateEvery(
  k: number,
  learner: MetaLearner,
  valEpisodes: () => ObservableInput<Episode>,
  opts: EvaluateOptions = {},
): MonoTypeOperatorFunction<TrainEvent> {
  if (!Number.isInteger(k) || k <= 0) throw new RangeError(`evaluateEvery: k must be a positive integer, got ${k}`);
  return concatMap((ev) =>
    ev.iteration % k === 0 ? evaluate(learner, valEpisodes(), opts).pipe(map((val) => ({ ...ev, val }))) : of(ev),
  );
}

export interface CheckpointEveryOptions {
  /** file to (over)write, or a function of the event */
  path: string | ((ev: TrainEvent) => string);
  /** snapshot to save; called synchronously when the event passes, so it matches that iteration */
  state: (ev: TrainEvent) => Checkpoint;
  /** writer (default: core's atomic saveCheckpoint) */
  save?: (path: string, c: Checkpoint) => void | Promise<void>;
}

/**
 * Every `m` iterations, snapshot `state(ev)` at once (so later steps cannot leak into it) and write
 * it; writes are serialised, and the event is passed on (with `checkpoint` set) once written.
 */
export function checkpointEvery(m: number, opts: CheckpointEveryOptions): MonoTypeOperatorFunction<TrainEvent> {
  if (!Number.isInteger(m) || m <= 0) throw new RangeError(`checkpointEvery: m must be a positive integer, got ${m}`);
  const save = opts.save ?? saveCheckpoint;
  return (source) =>
    source.pipe(
      map((ev) => {
        if (ev.iteration % m !== 0) return { ev };
        const path = typeof opts.path === 'string' ? opts.path : opts.path(ev);
        return { ev, path, ck: opts.state(ev) };
      }),
      concatMap(({ ev, path, ck }) => {
        if (!ck || path === undefined) return of(ev);
        return defer(async () => {
          await save(path, ck);
          return { ...ev, checkpoint: path };
        });
      }),
    );
}
