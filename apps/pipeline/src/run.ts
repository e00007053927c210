import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Subject, bufferCount, lastValueFrom, merge, take, takeUntil, tap, timer, type Observable, EMPTY } from 'rxjs';
import {
  NonFiniteLossError,
  OnnxRunner,
  Rng,
  accuracy,
  checkpointEvery,
  evaluate,
  evaluateEvery,
  formatPercentCI,
  getLearner,
  initEngine,
  loadCheckpoint,
  maxAbsDiff,
  parityBound,
  metaTrain,
  paced,
  saveCheckpoint,
  saveOnnx,
  writeFileAtomic,
  type Checkpoint,
  type Episode,
  type EvalResult,
  type MetaLearner,
  type TrainEvent,
  onnxEpisodeAccuracy,
  WorkerPool,
  defaultWorkerCount,
  isTaskParallel,
  isSequenceEvaluator,
  evaluateByInstance,
  formatByInstance,
  type AccuracyByInstance,
  withWorkerPool,
  type LearnerContext,
} from '@metalearn/core';
import { EpisodeSampler, augmentEpisode, type ClassDataset, type EpisodeSpec } from '@metalearn/data';
import '@metalearn/metric';
import '@metalearn/optim';
import '@metalearn/memory';
import { datasetIds, datasetSchema, openDataset } from './datasets.js';
import { fullSplitEpisode, fullSplitEvaluate } from './full-eval.js';
import { Progress, formatDuration } from './progress.js';
import { renderReport } from './report.js';
import { PipelineValidationError, loadPipeline, type PipelineConfig } from './validate.js';

export interface RunOptions {
  /** output directory (default: runs/<pipeline file name>) */
  out?: string;
  /** continue from DIR/checkpoints (same RNG position, same metrics.jsonl prefix) */
  resume?: boolean;
  /** override train.seed */
  seed?: number;
  /** where progress goes (default stderr); null = silent */
  progressStream?: NodeJS.WriteStream | null;
  /** force TTY-style (true) or plain (false) progress */
  tty?: boolean;
  /** emits to stop training gracefully (final checkpoint, then exit); the CLI wires SIGINT here */
  stop$?: Observable<unknown>;
  /** lines for the user (default: stdout) */
  log?: (line: string) => void;
  /** called after every meta-training step (after logging and checkpointing) */
  onTrainEvent?: (ev: TrainEvent) => void;
}

export interface RunSummary {
  pipeline: string;
  name?: string;
  learner: string;
  family: string;
  dataset: string;
  evalDataset: string;
  ways: number;
  shots: number;
  queries: number;
  trainWays: number;
  trainShots: number;
  testEpisodes: number;
  accuracy: number;
  ci95: number;
  std: number;
  iterations: number;
  episodesSeen: number;
  trainSeconds: number;
  evalSeconds: number;
  totalSeconds: number;
  backend: string;
  /** what ran meta-training: the tfjs backend, or 'onnxruntime' (learner option engine: onnxruntime) */
  trainEngine: string;
  evalEngine: string;
  /**
   * Learners that read an episode as one labelled sequence (MANN, LSTM meta-learner): accuracy at the
   * k-th presentation of a class over the test episodes (support and query items shuffled into one
   * sequence, labels one step late), keyed 'inst1'.. ; ci95 is binomial over the scored items
   */
  accuracyByInstance?: AccuracyByInstance;
  /** 'full': adapted on the whole training split, `accuracy` over the test split's examples (`testEpisodes` = test examples) */
  evalMode?: 'full';
  seed: number;
  stopped: 'completed' | 'interrupted' | 'time-budget';
  onnx: { path: string | null; maxAbsDiff: number | null; tolerance: number; /** tolerance × max(1, max |tfjs logit|): the parity bound */ bound: number | null; parityOk: boolean | null; episode: number; classes: number[] };
  out: string;
  report: string;
  checkpoint: string | null;
  headline: string;
}

/** Exit codes of `metalearn run`. */
export const EXIT = { ok: 0, failure: 1, invalid: 2, diverged: 3, interrupted: 130 } as const;

export class RunInterrupted extends Error {
  constructor(
    readonly iteration: number,
    readonly checkpoint: string,
  ) {
    super(`interrupted at iteration ${iteration}; checkpoint ${checkpoint} (continue with --resume)`);
    this.name = 'RunInterrupted';
  }
}

const CKPT_PREFIX = 'iter-';
const KEEP_CHECKPOINTS = 3;

function ckptName(iteration: number): string {
  return `${CKPT_PREFIX}${String(iteration).padStart(7, '0')}.json`;
}

/** Latest checkpoint of an output directory, or null. */
export function latestCheckpoint(out: string): string | null {
  const dir = path.join(out, 'checkpoints');
  const latest = path.join(dir, 'LATEST');
  if (fs.existsSync(latest)) {
    const f = path.join(dir, fs.readFileSync(latest, 'utf8').trim());
    if (fs.existsSync(f)) return f;
  }
  if (!fs.existsSync(dir)) return null;
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(CKPT_PREFIX) && f.endsWith('.json')).sort();
  return files.length ? path.join(dir, files[files.length - 1]!) : null;
}

function pruneCheckpoints(dir: string): void {
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(CKPT_PREFIX) && f.endsWith('.json')).sort();
  for (const f of files.slice(0, Math.max(0, files.length - KEEP_CHECKPOINTS))) fs.rmSync(path.join(dir, f), { force: true });
}

/** Round a float for the reproducible log (enough digits to compare, no noise). */
function r6(v: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(7)) : v;
}

interface LogWindow {
  n: number;
  loss: number;
  acc: number;
}

/**
 * Run a pipeline file end to end: validate, load data, meta-train (checkpoints, validation,
 * metrics.jsonl), evaluate on test episodes (mean ± 95% CI), export the adapted model to ONNX and
 * check it in onnxruntime, write report.html and summary.json.
 */
export async function runPipeline(file: string, opts: RunOptions = {}): Promise<RunSummary> {
  const log = opts.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const tStart = performance.now();
  // 1. validate (writes nothing on failure)
  const cfg = await loadPipeline(file, { datasets: datasetIds(), datasetSchema });
  if (opts.seed !== undefined) cfg.train.seed = opts.seed;
  const seed = cfg.train.seed;
  const out = path.resolve(opts.out ?? path.join('runs', path.basename(file).replace(/\.(ya?ml|json)$/i, '')));
  const ckDir = path.join(out, 'checkpoints');
  const metricsFile = path.join(out, 'metrics.jsonl');

  // 2. engine, data, learner
  const engine = await initEngine({ quiet: true });
  const ds = await openDataset(cfg.data.dataset, cfg.data.options, file);
  const evalDs: ClassDataset = cfg.evaluate.dataset ? await openDataset(cfg.evaluate.dataset.dataset, cfg.evaluate.dataset.options, file) : ds;
  const testSplit = cfg.evaluate.dataset ? cfg.evaluate.dataset.split : cfg.data.testSplit;
  const checkSplit = (d: ClassDataset, split: string, ptr: string): void => {
    if (!(split in d.splits)) throw new PipelineValidationError(file, [{ path: ptr, message: `dataset '${d.name}' has no split '${split}'`, allowed: Object.keys(d.splits) }]);
  };
  checkSplit(ds, cfg.data.trainSplit, '/data/trainSplit');
  checkSplit(ds, cfg.data.valSplit, '/data/valSplit');
  checkSplit(evalDs, testSplit, cfg.evaluate.dataset ? '/evaluate/dataset/split' : '/data/testSplit');
  if (evalDs.featureShape.join('x') !== ds.featureShape.join('x')) {
    throw new PipelineValidationError(file, [{ path: '/evaluate/dataset', message: `evaluate.dataset '${cfg.evaluate.dataset!.dataset}' (${evalDs.name}) has examples of shape [${evalDs.featureShape}], the training data '${cfg.data.dataset}' (${ds.name}) [${ds.featureShape}]; the learner needs one input shape (cross-domain evaluation needs data of the training shape, e.g. the same image size and channels)` }]);
  }
  const trainSpec: EpisodeSpec = { ways: cfg.episodes.ways, shots: cfg.episodes.shots, queries: cfg.episodes.queries, ...(cfg.episodes.withinGroup ? { withinGroup: cfg.episodes.withinGroup } : {}) };
  const evalSpec: EpisodeSpec = { ways: cfg.evaluate.ways, shots: cfg.evaluate.shots, queries: cfg.evaluate.queries, ...(cfg.evaluate.withinGroup ? { withinGroup: cfg.evaluate.withinGroup } : {}) };
  // episode specs that the data cannot serve are pipeline errors (exit 2, nothing written)
  const sampler = (d: ClassDataset, split: string, spec: typeof trainSpec, tag: string, ptr: string): EpisodeSampler => {
    try {
      return new EpisodeSampler(d, split, spec, `${seed}/${tag}`);
    } catch (e) {
      throw new PipelineValidationError(file, [{ path: ptr, message: `${(e as Error).message} (${tag} episodes: ${spec.ways}-way ${spec.shots}-shot ${spec.queries} queries${spec.withinGroup ? ` within one '${spec.withinGroup}'` : ''} from split '${split}')` }]);
    }
  };
  const trainSampler = sampler(ds, cfg.data.trainSplit, trainSpec, 'train', '/episodes');
  const translate = cfg.episodes.augment?.translate ?? 0;
  if (translate > 0 && ds.featureShape.length !== 3) {
    throw new PipelineValidationError(file, [{ path: '/episodes/augment/translate', message: `translations need image data [height, width, channels]; dataset '${cfg.data.dataset}' (${ds.name}) has examples of shape [${ds.featureShape}]` }]);
  }
  // training episode i: augmentation drawn from its own generator (seed, i), so a resumed run sees the same images
  const trainEpisode = (i: number): Episode => (translate > 0 ? augmentEpisode(trainSampler.episode(i), { translate }, new Rng(`augment/${seed}/${i}`)) : trainSampler.episode(i));
  const valSampler = sampler(ds, cfg.data.valSplit, evalSpec, 'val', '/evaluate');
  const testSampler = sampler(evalDs, testSplit, evalSpec, 'test', '/evaluate');
  const factory = getLearner(cfg.learner.id);
  const { id: _id, ...learnerOptions } = cfg.learner;
  let learner: MetaLearner;
  try {
    learner = factory.create(learnerOptions, { inputShape: [...ds.featureShape], seed });
  } catch (e) {
    throw new PipelineValidationError(file, [{ path: '/learner', message: `cannot build '${factory.id}' for examples of shape [${ds.featureShape}]: ${(e as Error).message}` }]);
  }

  // 3. output directory, resume
  let startIteration = 0;
  let startEpisodes = 0;
  let window: LogWindow = { n: 0, loss: 0, acc: 0 };
  let lastCheckpoint: string | null = null;
  if (opts.resume) {
    const ckFile = latestCheckpoint(out);
    if (!ckFile) throw new Error(`--resume: no checkpoint in ${ckDir}`);
    const ck = loadCheckpoint(ckFile);
    if (ck.learner !== cfg.learner.id) throw new Error(`--resume: ${ckFile} is a '${ck.learner}' checkpoint, the pipeline trains '${cfg.learner.id}'`);
    const meta = (ck.meta ?? {}) as { seed?: number; logWindow?: LogWindow };
    if (meta.seed !== undefined && meta.seed !== seed) throw new Error(`--resume: ${ckFile} was trained with seed ${meta.seed}, this run uses seed ${seed}`);
    learner.load(ck);
    startIteration = ck.progress?.['iterations'] ?? 0;
    startEpisodes = ck.progress?.['episodes'] ?? startIteration * cfg.train.metaBatch;
    window = meta.logWindow ?? window;
    lastCheckpoint = ckFile;
    // keep the log exactly as an uninterrupted run would have it up to the checkpoint
    if (fs.existsSync(metricsFile)) {
      const kept = fs
        .readFileSync(metricsFile, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .filter((l) => {
          const r = JSON.parse(l) as { type: string; iteration?: number };
          return (r.type === 'train' || r.type === 'val') && (r.iteration ?? Infinity) <= startIteration;
        });
      writeFileAtomic(metricsFile, kept.map((l) => l + '\n').join(''));
    }
    log(`resuming from ${path.relative(process.cwd(), ckFile)} at iteration ${startIteration}`);
  } else {
    fs.mkdirSync(out, { recursive: true });
    fs.rmSync(metricsFile, { force: true });
    fs.rmSync(ckDir, { recursive: true, force: true });
    for (const f of ['summary.json', 'report.html']) fs.rmSync(path.join(out, f), { force: true });
  }
  fs.mkdirSync(ckDir, { recursive: true });
  const appendMetric = (rec: Record<string, unknown>): void => fs.appendFileSync(metricsFile, JSON.stringify(rec) + '\n');

  const fullCheckpoint = (ev: { iteration: number; episodes: number }): Checkpoint => {
    const ck = learner.state();
    return {
      ...ck,
      rng: new Rng(`episode/${seed}/train/${ev.episodes}`).state(),
      progress: { ...(ck.progress ?? {}), iterations: ev.iteration, episodes: ev.episodes },
      meta: {
        ...(ck.meta ?? {}),
        seed,
        pipeline: path.resolve(file),
        nextTrainEpisode: ev.episodes,
        logWindow: { ...window },
        note: 'training episode i is drawn from its own generator seeded by (seed, i): resume continues at nextTrainEpisode',
      },
    };
  };
  const writeCk = (ck: Checkpoint): string => {
    const name = ckptName(ck.progress!['iterations']!);
    const f = path.join(ckDir, name);
    saveCheckpoint(f, ck);
    writeFileAtomic(path.join(ckDir, 'LATEST'), name + '\n');
    pruneCheckpoints(ckDir);
    return f;
  };

  // 4. meta-training stream
  const total = cfg.train.iterations;
  const stop$ = new Subject<'interrupted' | 'time-budget'>();
  const run = { stopped: 'completed' as RunSummary['stopped'] };
  const stopSub = opts.stop$?.subscribe(() => {
    run.stopped = 'interrupted';
    stop$.next('interrupted');
  });
  const budget$ = cfg.train.timeBudgetSeconds !== undefined ? timer(cfg.train.timeBudgetSeconds * 1000) : EMPTY;
  const budgetSub = budget$.subscribe(() => {
    if (run.stopped === 'completed') run.stopped = 'time-budget';
    stop$.next('time-budget');
  });
  const progress = opts.progressStream === null ? null : new Progress('train', opts.progressStream ?? process.stderr, { tty: opts.tty, budgetSeconds: cfg.train.timeBudgetSeconds });
  const val = (): Iterable<Episode> => {
    const n = cfg.train.valEpisodes;
    return (function* () {
      for (let i = 0; i < n; i++) yield valSampler.episode(i);
    })();
  };
  let lastEvent: TrainEvent | null = null;
  let recent: { t: number; eps: number }[] = [];
  let runLoss = NaN;
  let runAcc = NaN;
  const tTrain = performance.now();
  if (startIteration < total) {
    const source = paced(trainEpisode, { start: startEpisodes });
    // train.workers: the tasks of a meta-batch in worker threads (same results, see core/parallel)
    const pool = await startTrainingPool(learner, cfg, { id: factory.id, config: learnerOptions, ctx: { inputShape: [...ds.featureShape], seed } }, file, log);
    const trainer = pool && isTaskParallel(learner) ? withWorkerPool(learner, pool) : learner;
    let stream = source.pipe(bufferCount(cfg.train.metaBatch), metaTrain(trainer, { startIteration, startEpisodes }), take(total - startIteration), takeUntil(stop$));
    if (cfg.train.valEvery > 0) stream = stream.pipe(evaluateEvery(cfg.train.valEvery, learner, val));
    stream = stream.pipe(
      tap((ev) => {
        // the reproducible log: windowed means of loss/accuracy, validation results
        window.n++;
        window.loss += ev.loss;
        window.acc += ev.accuracy;
        if (ev.iteration % cfg.train.logEvery === 0 || ev.iteration === total) {
          appendMetric({ type: 'train', iteration: ev.iteration, episodes: ev.episodes, loss: r6(window.loss / window.n), accuracy: r6(window.acc / window.n), lr: r6(ev.metrics?.['lr'] ?? NaN) });
          window = { n: 0, loss: 0, acc: 0 };
        }
        if (ev.val) {
          appendMetric({ type: 'val', iteration: ev.iteration, accuracy: r6(ev.val.mean), ci95: r6(ev.val.ci95), episodes: ev.val.n });
          progress?.log(`val @${ev.iteration}: ${formatPercentCI(ev.val)} (${ev.val.n} episodes)`);
        }
      }),
      checkpointEvery(cfg.train.checkpointEvery, { path: (ev) => path.join(ckDir, ckptName(ev.iteration)), state: fullCheckpoint, save: (_p, ck) => void (lastCheckpoint = writeCk(ck)) }),
      tap((ev) => {
        lastEvent = ev;
        const now = performance.now();
        recent.push({ t: now, eps: ev.episodes });
        recent = recent.filter((r) => now - r.t < 10_000);
        const first = recent[0]!;
        const rate = recent.length > 1 ? ((ev.episodes - first.eps) * 1000) / (now - first.t) : NaN;
        runLoss = Number.isNaN(runLoss) ? ev.loss : 0.95 * runLoss + 0.05 * ev.loss;
        runAcc = Number.isNaN(runAcc) ? ev.accuracy : 0.95 * runAcc + 0.05 * ev.accuracy;
        progress?.update({ done: ev.iteration, total, rate, loss: runLoss, accuracy: runAcc });
        opts.onTrainEvent?.(ev);
      }),
    );
    try {
      await lastValueFrom(stream, { defaultValue: null });
    } catch (e) {
      progress?.done();
      stopSub?.unsubscribe();
      budgetSub.unsubscribe();
      if (e instanceof NonFiniteLossError) {
        const kept = lastCheckpoint ? path.relative(process.cwd(), lastCheckpoint) : 'none written yet';
        appendMetric({ type: 'error', iteration: e.iteration, message: e.message });
        throw new NonFiniteLossErrorWithCheckpoint(e, kept);
      }
      throw e;
    } finally {
      stopSub?.unsubscribe();
      budgetSub.unsubscribe();
      await pool?.close();
    }
    progress?.done();
  } else {
    stopSub?.unsubscribe();
    budgetSub.unsubscribe();
  }
  const trainSeconds = (performance.now() - tTrain) / 1000;
  const endEv = (lastEvent as TrainEvent | null) ?? { iteration: startIteration, episodes: startEpisodes };
  // final checkpoint (unless the last iteration was just checkpointed)
  if (!lastCheckpoint || !lastCheckpoint.endsWith(ckptName(endEv.iteration))) lastCheckpoint = writeCk(fullCheckpoint(endEv));
  if (run.stopped === 'interrupted') {
    learner.dispose();
    throw new RunInterrupted(endEv.iteration, lastCheckpoint);
  }

  // 5. test evaluation (adapted classifiers; forward passes in onnxruntime or tfjs)
  const tEval = performance.now();
  const evalProgress = opts.progressStream === null ? null : new Progress('test', opts.progressStream ?? process.stderr, { tty: opts.tty });
  const nTest = cfg.evaluate.episodes;
  const testEpisodes = function* (): Generator<Episode> {
    for (let i = 0; i < nTest; i++) yield testSampler.episode(i);
  };
  const evalEngine: string = cfg.evaluate.engine;
  const ortScorer = (ep: Episode): Promise<number> => onnxEpisodeAccuracy(learner, ep);
  let accSum = 0;
  // evaluate.mode 'full': adapt on the whole training split, classify the whole test split (one result over test examples)
  const fullEp = cfg.evaluate.mode === 'full' ? fullSplitEpisode(ds, cfg.data.trainSplit, evalDs, testSplit) : null;
  const result: EvalResult = fullEp ? await fullSplitEvaluate(learner, fullEp, { engine: cfg.evaluate.engine }) : await lastValueFrom(
    evaluate(learner, testEpisodes(), {
      ...(evalEngine === 'onnxruntime' ? { scorer: ortScorer } : {}),
      onEpisode: (i, acc) => {
        accSum += acc;
        const el = (performance.now() - tEval) / 1000;
        evalProgress?.update({ done: i + 1, total: nTest, rate: (i + 1) / el, accuracy: accSum / (i + 1) });
      },
    }),
  );
  evalProgress?.done();
  appendMetric({ type: 'test', iteration: endEv.iteration, accuracy: r6(result.mean), ci95: r6(result.ci95), episodes: result.n, ways: evalSpec.ways, shots: evalSpec.shots, engine: evalEngine, ...(fullEp ? { mode: 'full', testExamples: result.n, ways: fullEp.ways, shots: fullEp.shots } : {}) });
  // sequence learners: accuracy by instance on the same test episodes (Santoro et al.'s table)
  let byInstance: AccuracyByInstance | undefined;
  if (!fullEp && isSequenceEvaluator(learner)) {
    const instProgress = opts.progressStream === null ? null : new Progress('by instance', opts.progressStream ?? process.stderr, { tty: opts.tty });
    const tInst = performance.now();
    byInstance = evaluateByInstance(learner, (i) => testSampler.episode(i), nTest, evalSpec.shots + evalSpec.queries, seed, (done) =>
      instProgress?.update({ done, total: nTest, rate: done / ((performance.now() - tInst) / 1000) }),
    );
    instProgress?.done();
    appendMetric({ type: 'test-by-instance', iteration: endEv.iteration, episodes: nTest, ...Object.fromEntries(Object.entries(byInstance).map(([k, v]) => [`acc_${k}`, v.mean])) });
  }
  const evalSeconds = (performance.now() - tEval) / 1000;

  // 6. export the classifier adapted to test episode 0, parity check in onnxruntime
  let onnxPath: string | null = null;
  let diff: number | null = null;
  let parityOk: boolean | null = null;
  let bound: number | null = null;
  const ep0 = fullEp ?? testSampler.episode(0);
  try {
    if (cfg.export.onnx !== false) {
      const clf = learner.adapt(ep0.support, ep0.ways);
      try {
        const model = clf.toOnnx();
        onnxPath = path.resolve(out, cfg.export.onnx);
        saveOnnx(onnxPath, model);
        if (cfg.export.parity) {
          const want = clf.predict(ep0.query.x);
          const runner = await OnnxRunner.create(onnxPath);
          try {
            const got = await runner.run(ep0.query.x.dataSync() as Float32Array, [...ep0.query.x.shape]);
            diff = maxAbsDiff(got, { data: want.dataSync() as Float32Array, shape: [...want.shape] });
            bound = parityBound(cfg.export.tolerance, want);
          } finally {
            want.dispose();
            await runner.release();
          }
          parityOk = diff <= bound;
        }
      } finally {
        clf.dispose();
      }
    }
  } finally {
    ep0.dispose?.();
  }

  // 7. summary + report
  const totalSeconds = (performance.now() - tStart) / 1000;
  const headline = fullEp
    ? `${factory.id} on ${evalDs.name}: test-set accuracy ${(100 * result.mean).toFixed(2)} % (${result.n} test examples, ${fullEp.ways} classes, adapted on all ${fullEp.support.y.length} training examples)`
    : `${factory.id} on ${evalDs.name}: ${evalSpec.ways}-way ${evalSpec.shots}-shot accuracy ${formatPercentCI(result)} over ${result.n} test episodes` +
      (byInstance ? `; by instance ${formatByInstance(byInstance)}` : '');
  const summary: RunSummary = {
    pipeline: path.resolve(file),
    ...(cfg.name ? { name: cfg.name } : {}),
    learner: factory.id,
    family: factory.family,
    dataset: ds.name,
    evalDataset: evalDs.name,
    ways: fullEp?.ways ?? evalSpec.ways,
    shots: fullEp?.shots ?? evalSpec.shots,
    queries: evalSpec.queries,
    trainWays: trainSpec.ways,
    trainShots: trainSpec.shots,
    testEpisodes: result.n,
    accuracy: result.mean,
    ci95: result.ci95,
    std: result.std,
    iterations: endEv.iteration,
    episodesSeen: endEv.episodes,
    trainSeconds: Number(trainSeconds.toFixed(2)),
    evalSeconds: Number(evalSeconds.toFixed(2)),
    totalSeconds: Number(totalSeconds.toFixed(2)),
    backend: engine.backend,
    trainEngine: (learnerOptions as Record<string, unknown>)['engine'] === 'onnxruntime' ? 'onnxruntime' : engine.backend,
    evalEngine,
    ...(byInstance ? { accuracyByInstance: byInstance } : {}),
    ...(fullEp ? { evalMode: 'full' as const } : {}),
    seed,
    stopped: run.stopped,
    onnx: { path: onnxPath, maxAbsDiff: diff, tolerance: cfg.export.tolerance, bound, parityOk, episode: 0, classes: ep0.description?.classes ?? [] },
    out,
    report: path.join(out, 'report.html'),
    checkpoint: lastCheckpoint,
    headline,
  };
  writeFileAtomic(path.join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  const records = fs
    .readFileSync(metricsFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { type: string; iteration: number; loss: number; accuracy: number; ci95: number });
  const html = renderReport({
    title: `metalearn: ${cfg.name ?? path.basename(file)}`,
    summary: { ...summary },
    train: records.filter((r) => r.type === 'train'),
    val: records.filter((r) => r.type === 'val'),
    config: cfg,
  });
  writeFileAtomic(path.join(out, 'report.html'), html);
  learner.dispose();
  return summary;
}

export class NonFiniteLossErrorWithCheckpoint extends Error {
  constructor(
    readonly diverged: NonFiniteLossError,
    readonly checkpoint: string,
  ) {
    super(`${diverged.message.replace(/ the last good checkpoint was kept\.$/, '')} Last good checkpoint: ${checkpoint}.`);
    this.name = 'NonFiniteLossError';
  }
}

/** The user-facing closing lines of a run. */
export function summaryLines(s: RunSummary): string[] {
  const rel = (p: string | null): string => (p ? path.relative(process.cwd(), p) || '.' : '(none)');
  const lines = [
    '',
    `${s.headline}`,
    `  trained ${s.iterations} iterations (${s.episodesSeen} episodes, ${s.trainWays}-way ${s.trainShots}-shot) in ${formatDuration(s.trainSeconds)} on ${s.trainEngine ?? s.backend}${s.stopped !== 'completed' ? ` (stopped: ${s.stopped})` : ''}; evaluation ${formatDuration(s.evalSeconds)} (${s.evalEngine})`,
  ];
  if (s.onnx.path) {
    const par = s.onnx.maxAbsDiff === null ? 'parity not checked' : `onnxruntime vs tfjs max |Δlogit| = ${s.onnx.maxAbsDiff.toExponential(2)} (${s.onnx.parityOk ? 'ok' : 'FAILED'}, bound ${s.onnx.bound?.toExponential(2)} = tolerance ${s.onnx.tolerance} × max(1, max |logit|))`;
    lines.push(`  model:   ${rel(s.onnx.path)} (adapted to ${s.evalMode === 'full' ? 'the whole training split' : 'test episode 0'}; ${par})`);
  }
  lines.push(`  report:  ${rel(s.report)}`, `  summary: ${rel(path.join(s.out, 'summary.json'))}`, `  metrics: ${rel(path.join(s.out, 'metrics.jsonl'))}`);
  return lines;
}

/**
 * The worker pool for `train.workers` (default: the number of cores), or null to train in this
 * thread: one worker or fewer than two episodes per meta-batch, or a learner without a task-parallel
 * step (said once on the log). Each worker imports the learner families and the pipeline's plugins
 * and builds the same learner (id, options, seed); the caller closes the pool.
 */
async function startTrainingPool(
  learner: MetaLearner,
  cfg: PipelineConfig,
  spec: { id: string; config: unknown; ctx: LearnerContext },
  file: string,
  log: (line: string) => void,
): Promise<WorkerPool | null> {
  const asked = (cfg.train as { workers?: number }).workers;
  const workers = Math.min(asked ?? defaultWorkerCount(), cfg.train.metaBatch);
  if (workers <= 1) return null;
  if (!isTaskParallel(learner)) {
    if (asked !== undefined) log(`train.workers: learner '${learner.id}' (${learner.family} family) has no task-parallel step; training in one thread`);
    return null;
  }
  const baseDir = path.dirname(path.resolve(file));
  const modules = [
    ...['@metalearn/metric', '@metalearn/optim', '@metalearn/memory'].map((m) => import.meta.resolve(m)),
    ...cfg.plugins.map((p) => (p.startsWith('.') || p.startsWith('/') ? pathToFileURL(path.resolve(baseDir, p)).href : p)),
  ];
  return WorkerPool.create({ size: workers, modules, learner: spec });
}
