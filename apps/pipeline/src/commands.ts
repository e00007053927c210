import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { parse as parseYaml } from 'yaml';
import {
  BENCH_WORKLOADS,
  OnnxRunner,
  accuracy,
  argmaxRows,
  evaluate,
  getLearner,
  initEngine,
  isSequenceEvaluator,
  evaluateByInstance,
  type AccuracyByInstance,
  loadCheckpoint,
  loadOnnx,
  maxAbsDiff,
  parityBound,
  onnxProto,
  runBenchComparison,
  writeFileAtomic,
  type BenchCompareOptions,
  type BenchComparison,
  type Checkpoint,
  type Episode,
  type EvalResult,
  type MetaLearner,
  onnxEpisodeAccuracy,
} from '@metalearn/core';
import { EpisodeSampler, materialize, readEpisodeSet, type ClassDataset, type EpisodeSpec } from '@metalearn/data';
import { lastValueFrom } from 'rxjs';
import '@metalearn/metric';
import '@metalearn/optim';
import '@metalearn/memory';
import { LEARNER_BENCH_WORKLOADS, learnerBenchWorkers, learnerBenchWorkloads } from './bench-learners.js';
import { datasetIds, datasetSchema, openDataset } from './datasets.js';
import { imagePreprocess, isImageFile, loadImages, readFloatFile, type ExampleBatch, type Preprocess } from './inputs.js';
import { loadPipeline, validateLearnerOptions, type PipelineConfig } from './validate.js';

/** An error in what the user gave (file, field, option): the CLI prints it and exits 2. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** A trained learner restored from a checkpoint, with the data it was trained on. */
export interface Trained {
  checkpoint: string;
  ck: Checkpoint;
  learner: MetaLearner;
  /** the dataset named by the pipeline (or by --data) */
  dataset: ClassDataset;
  /** class split used for test episodes */
  testSplit: string;
  seed: number;
  /** the pipeline, when the data came from one */
  pipeline: PipelineConfig | null;
  inputShape: number[];
  invert: boolean;
}

function readStructured(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let v: unknown;
  try {
    v = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new InputError(`${file}: cannot parse (${(e as Error).message.split('\n')[0]})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new InputError(`${file}: expected an object`);
  return v as Record<string, unknown>;
}

/**
 * Restore the learner of a checkpoint written by `metalearn run`. The data comes from `data`: a
 * pipeline file, or a dataset config `{type, ...options, split?}` (JSON/YAML); by default from the
 * pipeline recorded in the checkpoint (`meta.pipeline`).
 */
export async function loadTrained(checkpoint: string, opts: { data?: string; set?: Record<string, unknown> } = {}): Promise<Trained> {
  if (!fs.existsSync(checkpoint)) throw new InputError(`checkpoint ${checkpoint}: file not found`);
  let ckFile = checkpoint;
  if (fs.statSync(checkpoint).isDirectory()) {
    // a run directory or its checkpoints/ folder: take LATEST
    const dir = fs.existsSync(path.join(checkpoint, 'checkpoints')) ? path.join(checkpoint, 'checkpoints') : checkpoint;
    const latest = path.join(dir, 'LATEST');
    if (!fs.existsSync(latest)) throw new InputError(`checkpoint ${checkpoint}: a directory without checkpoints/LATEST`);
    ckFile = path.join(dir, fs.readFileSync(latest, 'utf8').trim());
  }
  let ck: Checkpoint;
  try {
    ck = loadCheckpoint(ckFile);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  const meta = (ck.meta ?? {}) as { pipeline?: string; seed?: number; inputShape?: number[] };
  const dataFile = opts.data ?? meta.pipeline;
  if (!dataFile) throw new InputError(`checkpoint ${ckFile}: field 'meta.pipeline' is missing; pass --data <pipeline file or dataset config>`);
  if (!fs.existsSync(dataFile)) {
    throw new InputError(opts.data ? `--data ${dataFile}: file not found` : `checkpoint ${ckFile}: its pipeline ${dataFile} (field 'meta.pipeline') no longer exists; pass --data <pipeline file or dataset config>`);
  }
  const raw = readStructured(dataFile);
  let pipeline: PipelineConfig | null = null;
  let dsId: string;
  let dsOpts: Record<string, unknown>;
  let testSplit: string;
  if ('learner' in raw || 'data' in raw) {
    pipeline = await loadPipeline(dataFile, { datasets: datasetIds(), datasetSchema });
    if (pipeline.evaluate.dataset) {
      dsId = pipeline.evaluate.dataset.dataset;
      dsOpts = pipeline.evaluate.dataset.options;
      testSplit = pipeline.evaluate.dataset.split;
    } else {
      dsId = pipeline.data.dataset;
      dsOpts = pipeline.data.options;
      testSplit = pipeline.data.testSplit;
    }
  } else if (typeof raw['type'] === 'string') {
    const { type, split, ...rest } = raw as { type: string; split?: unknown };
    if (!datasetIds().includes(type)) throw new InputError(`${dataFile}: field 'type': unknown dataset '${type}' (allowed: ${datasetIds().join(', ')})`);
    if (split !== undefined && typeof split !== 'string') throw new InputError(`${dataFile}: field 'split' must be a split name`);
    dsId = type;
    dsOpts = rest;
    testSplit = split ?? 'test';
  } else throw new InputError(`${dataFile}: neither a pipeline (data, learner, ...) nor a dataset config (field 'type' missing)`);
  await initEngine({ quiet: true });
  let dataset: ClassDataset;
  try {
    dataset = await openDataset(dsId, dsOpts, dataFile);
  } catch (e) {
    throw new InputError(`${dataFile}: ${(e as Error).message}`);
  }
  if (!(testSplit in dataset.splits)) throw new InputError(`${dataFile}: dataset '${dataset.name}' has no split '${testSplit}' (splits: ${Object.keys(dataset.splits).join(', ')})`);
  const inputShape = meta.inputShape ?? [...dataset.featureShape];
  if (inputShape.join('x') !== dataset.featureShape.join('x')) {
    throw new InputError(`${dataFile}: dataset '${dataset.name}' has examples of shape [${dataset.featureShape}], checkpoint ${ckFile} was trained on [${inputShape}]`);
  }
  const seed = meta.seed ?? pipeline?.train.seed ?? 0;
  const config = withOverrides(ck, ckFile, opts.set);
  let learner: MetaLearner;
  try {
    const factory = getLearner(ck.learner);
    learner = factory.create(config, { inputShape, seed });
    learner.load(ck);
  } catch (e) {
    throw new InputError(`checkpoint ${ckFile}: cannot restore learner '${ck.learner}': ${(e as Error).message}`);
  }
  return { checkpoint: ckFile, ck, learner, dataset, testSplit, seed, pipeline, inputShape, invert: dsOpts['invert'] === true };
}

/**
 * The checkpoint's learner config with `set` (eval's `--set field=value`) applied on top, checked
 * against the learner's schema: e.g. iMAML's `evalInnerSteps` / `evalLambda`, chosen after training.
 */
function withOverrides(ck: Checkpoint, ckFile: string, set: Record<string, unknown> | undefined): unknown {
  if (!set || !Object.keys(set).length) return ck.config;
  const config = { ...(ck.config as Record<string, unknown>), ...set };
  const issues = validateLearnerOptions(ck.learner, structuredClone(config));
  if (issues.length) {
    const what = issues.map((i) => `${i.path.replace(/^\/learner\//, '')}: ${i.message}${i.allowed ? ` (allowed: ${i.allowed.join(', ')})` : ''}`);
    throw new InputError(`--set on checkpoint ${ckFile} (learner '${ck.learner}'): ${what.join('; ')}`);
  }
  return config;
}

export interface EvalOptions {
  /** learner config fields replaced before the learner is restored (`--set field=value`) */
  set?: Record<string, unknown>;
  data?: string;
  episodes?: number;
  ways?: number;
  shots?: number;
  queries?: number;
  /** classes of an episode share this metadata field (default: the pipeline's evaluate.withinGroup; '' = off) */
  withinGroup?: string;
  engine?: 'onnxruntime' | 'tfjs';
  seed?: number;
  onEpisode?: (i: number, acc: number) => void;
}

export interface EvalSummary extends EvalResult {
  checkpoint: string;
  learner: string;
  /** the `--set` overrides, when given */
  set?: Record<string, unknown>;
  dataset: string;
  split: string;
  ways: number;
  shots: number;
  queries: number;
  withinGroup?: string;
  episodes: number;
  engine: string;
  seed: number;
  /** sequence learners (MANN, LSTM meta-learner): accuracy by instance on the same episodes, as in `metalearn run` */
  accuracyByInstance?: AccuracyByInstance;
}

/**
 * Accuracy of a checkpoint on test episodes (mean ± 95% CI). Episode i is drawn as in `metalearn
 * run` (seed `(seed, 'test', i)`), so with the pipeline's settings the figure equals the run's.
 */
export async function evalCheckpoint(checkpoint: string, opts: EvalOptions = {}): Promise<EvalSummary> {
  const t = await loadTrained(checkpoint, { data: opts.data, set: opts.set });
  try {
    const ev = t.pipeline?.evaluate;
    const withinGroup = opts.withinGroup ?? ev?.withinGroup;
    const spec: EpisodeSpec = { ways: opts.ways ?? ev?.ways ?? 5, shots: opts.shots ?? ev?.shots ?? 1, queries: opts.queries ?? ev?.queries ?? 15, ...(withinGroup ? { withinGroup } : {}) };
    const n = opts.episodes ?? ev?.episodes ?? 600;
    const engine = opts.engine ?? ev?.engine ?? 'onnxruntime';
    const seed = opts.seed ?? t.seed;
    let sampler: EpisodeSampler;
    try {
      sampler = new EpisodeSampler(t.dataset, t.testSplit, spec, `${seed}/test`);
    } catch (e) {
      throw new InputError(`${spec.ways}-way ${spec.shots}-shot ${spec.queries}-query episodes${spec.withinGroup ? ` within one '${spec.withinGroup}'` : ''} from split '${t.testSplit}' of '${t.dataset.name}': ${(e as Error).message}`);
    }
    const eps = function* (): Generator<Episode> {
      for (let i = 0; i < n; i++) yield sampler.episode(i);
    };
    const res = await lastValueFrom(
      evaluate(t.learner, eps(), { ...(engine === 'onnxruntime' ? { scorer: (ep: Episode) => ortScore(t.learner, ep) } : {}), ...(opts.onEpisode ? { onEpisode: opts.onEpisode } : {}) }),
    );
    const byInstance = isSequenceEvaluator(t.learner) ? evaluateByInstance(t.learner, (i) => sampler.episode(i), n, spec.shots + spec.queries, seed) : undefined;
    const set = opts.set && Object.keys(opts.set).length ? { set: opts.set } : {};
    return { ...res, checkpoint: t.checkpoint, learner: t.ck.learner, ...set, dataset: t.dataset.name, split: t.testSplit, ...spec, episodes: n, engine, seed, ...(byInstance ? { accuracyByInstance: byInstance } : {}) };
  } finally {
    t.learner.dispose();
  }
}

/** Query accuracy of an episode with the adapted classifier run in onnxruntime (as `metalearn run`). */
export const ortScore = onnxEpisodeAccuracy;

/** A support set: examples, labels 0..ways-1 and class names. */
export interface SupportSet {
  x: Float32Array;
  y: Int32Array;
  shape: number[];
  classes: string[];
  source: string;
}

/**
 * Read a support set: an image folder `<class>/*.png|jpg` (classes in name order), an episode-set
 * file (`--episode i` picks the episode; items come from the checkpoint's dataset), or a JSON file
 * `{ "x": [[...example...], ...], "y": [label, ...], "classes"?: [name, ...] }`.
 */
export function readSupport(src: string, t: Trained, episode = 0): SupportSet {
  if (!fs.existsSync(src)) throw new InputError(`--support ${src}: not found`);
  if (fs.statSync(src).isDirectory()) {
    const classes = fs
      .readdirSync(src, { withFileTypes: true })
      .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
      .map((d) => d.name)
      .sort();
    if (classes.length < 2) throw new InputError(`--support ${src}: needs at least 2 class folders <class>/*.png, found ${classes.length}`);
    let pre: Preprocess;
    try {
      pre = imagePreprocess(t.inputShape, t.invert, `checkpoint ${t.checkpoint}`);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const files: string[] = [];
    const y: number[] = [];
    classes.forEach((c, ci) => {
      const fs_ = fs
        .readdirSync(path.join(src, c))
        .filter(isImageFile)
        .sort()
        .map((f) => path.join(src, c, f));
      if (!fs_.length) throw new InputError(`--support ${path.join(src, c)}: no .png/.jpg images in class folder '${c}'`);
      files.push(...fs_);
      for (const _ of fs_) y.push(ci);
    });
    let b: ExampleBatch;
    try {
      b = loadImages(files, pre);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    return { x: b.x, y: Int32Array.from(y), shape: b.shape, classes, source: src };
  }
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(fs.readFileSync(src, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`--support ${src}: not valid JSON (${(e as Error).message})`);
  }
  if (obj && obj['format'] === 'metalearn-episode-set') {
    let set;
    try {
      set = readEpisodeSet(src, t.dataset);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const d = set.episodes[episode];
    if (!d) throw new InputError(`--support ${src}: field 'episodes' has ${set.episodes.length} episodes, --episode ${episode} is out of range`);
    const ep = materialize(t.dataset, d);
    try {
      return {
        x: Float32Array.from(ep.support.x.dataSync() as Float32Array),
        y: Int32Array.from(ep.support.y),
        shape: [...t.inputShape],
        classes: d.classes.map((c) => t.dataset.classInfo(c).name),
        source: `${src} episode ${episode}`,
      };
    } finally {
      ep.dispose?.();
    }
  }
  if (!obj || typeof obj !== 'object' || !('x' in obj) || !('y' in obj)) {
    throw new InputError(`--support ${src}: expected an image folder, an episode-set file (format 'metalearn-episode-set') or JSON {x, y, classes?}`);
  }
  let b: ExampleBatch;
  try {
    b = readFloatFile(src, t.inputShape);
  } catch (e) {
    throw new InputError(`--support ${(e as Error).message}`);
  }
  const ys = obj['y'];
  if (!Array.isArray(ys) || ys.length !== b.n || !ys.every((v) => Number.isInteger(v) && v >= 0)) {
    throw new InputError(`--support ${src}: field 'y' must be ${b.n} non-negative integer labels (one per example in 'x')`);
  }
  const ways = Math.max(...(ys as number[])) + 1;
  for (let c = 0; c < ways; c++) if (!(ys as number[]).includes(c)) throw new InputError(`--support ${src}: field 'y' has no example of class ${c} (labels must be 0..ways-1)`);
  if (ways < 2) throw new InputError(`--support ${src}: field 'y' names ${ways} class; need at least 2`);
  const names = obj['classes'];
  if (names !== undefined && (!Array.isArray(names) || names.length !== ways || !names.every((s) => typeof s === 'string'))) {
    throw new InputError(`--support ${src}: field 'classes' must be ${ways} class names`);
  }
  return { x: b.x, y: Int32Array.from(ys as number[]), shape: b.shape, classes: (names as string[] | undefined) ?? Array.from({ length: ways }, (_, i) => String(i)), source: src };
}

export interface ExportOptions {
  support: string;
  out: string;
  data?: string;
  /** episode index in an episode-set support file (default 0) */
  episode?: number;
  /** largest allowed |onnxruntime - tfjs| logit difference (default 1e-4) */
  tolerance?: number;
}

export interface ExportResult {
  out: string;
  classes: string[];
  supportSize: number;
  maxAbsDiff: number;
  learner: string;
}

const META_CLASSES = 'metalearn.classes';
const META_PRE = 'metalearn.preprocess';

/** Add string metadata to a serialised ONNX model. */
export function withMetadata(bytes: Uint8Array, props: Record<string, string>): Uint8Array {
  const m = onnxProto.ModelProto.decode(bytes);
  const kept = (m.metadataProps ?? []).filter((p) => !(p.key! in props));
  m.metadataProps = [...kept, ...Object.entries(props).map(([key, value]) => onnxProto.StringStringEntryProto.create({ key, value }))];
  return onnxProto.ModelProto.encode(m).finish();
}

/** String metadata of a serialised ONNX model. */
export function readMetadata(bytes: Uint8Array): Record<string, string> {
  const m = onnxProto.ModelProto.decode(bytes);
  return Object.fromEntries((m.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
}

/**
 * Adapt a checkpoint's learner on a support set and export the adapted classifier as ONNX: the
 * graph is run in onnxruntime on the support examples and compared with tfjs before `out` is
 * written (atomically). Class names and the image preprocessing go into the model's metadata.
 */
export async function exportCheckpoint(checkpoint: string, opts: ExportOptions): Promise<ExportResult> {
  const tol = opts.tolerance ?? 1e-4;
  const t = await loadTrained(checkpoint, { data: opts.data });
  try {
    const s = readSupport(opts.support, t, opts.episode ?? 0);
    const n = s.y.length;
    const x = tf.tensor(s.x, [n, ...s.shape], 'float32');
    try {
      const clf = t.learner.adapt({ x, y: s.y }, s.classes.length);
      try {
        const model = clf.toOnnx();
        const bytes = withMetadata(model.bytes, {
          [META_CLASSES]: JSON.stringify(s.classes),
          [META_PRE]: JSON.stringify({ shape: t.inputShape, invert: t.invert }),
          'metalearn.learner': t.ck.learner,
          'metalearn.checkpoint': path.resolve(t.checkpoint),
        });
        const want = clf.predict(x);
        let diff: number;
        let bound: number;
        try {
          const runner = await OnnxRunner.create(bytes);
          try {
            const got = await runner.run(s.x, [n, ...s.shape]);
            diff = maxAbsDiff(got, { data: want.dataSync() as Float32Array, shape: [...want.shape] });
            bound = parityBound(tol, want);
          } finally {
            await runner.release();
          }
        } finally {
          want.dispose();
        }
        if (!(diff <= bound)) throw new Error(`export: onnxruntime and tfjs disagree on the support set (max |Δlogit| ${diff} > ${bound} = tolerance ${tol} × max(1, max |logit|)); ${opts.out} not written`);
        writeFileAtomic(opts.out, bytes);
        return { out: opts.out, classes: s.classes, supportSize: n, maxAbsDiff: diff, learner: t.ck.learner };
      } finally {
        clf.dispose();
      }
    } finally {
      x.dispose();
    }
  } finally {
    t.learner.dispose();
  }
}

export interface Prediction {
  input: string;
  index: number;
  class: string;
  logits: number[];
}

/**
 * Classify inputs with an exported model in onnxruntime: image files (decoded and resized to the
 * model's input shape) and/or `.json` / `.npy` float files of examples.
 */
export async function predictOnnx(modelFile: string, inputs: readonly string[]): Promise<Prediction[]> {
  if (!inputs.length) throw new InputError('predict: no inputs given (PNG/JPEG files or .json/.npy float files)');
  let model;
  try {
    model = loadOnnx(modelFile);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  if (model.inputs.length !== 1) throw new InputError(`${modelFile}: has ${model.inputs.length} inputs; predict needs a single-input classifier`);
  const meta = readMetadata(model.bytes);
  const shape = model.inputs[0]!.shape.slice(1);
  if (!shape.every((d) => typeof d === 'number' && d > 0)) throw new InputError(`${modelFile}: input shape [${model.inputs[0]!.shape}] has symbolic example dimensions`);
  const exShape = shape as number[];
  let invert = false;
  if (meta[META_PRE]) {
    try {
      invert = (JSON.parse(meta[META_PRE]) as { invert?: boolean }).invert === true;
    } catch {
      throw new InputError(`${modelFile}: metadata '${META_PRE}' is not valid JSON`);
    }
  }
  let classes: string[] | null = null;
  if (meta[META_CLASSES]) {
    try {
      classes = JSON.parse(meta[META_CLASSES]) as string[];
    } catch {
      throw new InputError(`${modelFile}: metadata '${META_CLASSES}' is not valid JSON`);
    }
  }
  const per = exShape.reduce((a, b) => a * b, 1);
  const batches: ExampleBatch[] = [];
  const images = inputs.filter(isImageFile);
  for (const f of inputs) if (!fs.existsSync(f)) throw new InputError(`${f}: file not found`);
  try {
    const pre = images.length ? imagePreprocess(exShape, invert, `model ${modelFile}`) : null;
    for (const f of inputs) batches.push(isImageFile(f) ? loadImages([f], pre!) : readFloatFile(f, exShape));
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  const n = batches.reduce((a, b) => a + b.n, 0);
  const x = new Float32Array(n * per);
  let off = 0;
  for (const b of batches) {
    x.set(b.x.subarray(0, b.n * per), off);
    off += b.n * per;
  }
  const runner = await OnnxRunner.create(model.bytes);
  let r;
  try {
    r = await runner.run(x, [n, ...exShape]);
  } finally {
    await runner.release();
  }
  const ways = r.shape[1]!;
  const pred = argmaxRows(r.data, n, ways);
  const sources = batches.flatMap((b) => b.sources);
  return sources.map((input, i) => ({
    input,
    index: pred[i]!,
    class: classes?.[pred[i]!] ?? String(pred[i]),
    logits: Array.from(r.data.subarray(i * ways, (i + 1) * ways)),
  }));
}

/**
 * `metalearn bench`: core's benchmark plus the learner rows (bench-learners.ts: FOMAML / MAML
 * meta-batches by the optim learners on `workers` threads), then PyTorch's reference for the same
 * workloads in the same invocation (when the Python has torch; `--no-torch` skips it). Rows carry
 * ours, torch's and the ratio.
 */
export async function bench(opts: BenchCompareOptions & { workers?: number }): Promise<BenchComparison> {
  const known = [...BENCH_WORKLOADS, ...LEARNER_BENCH_WORKLOADS];
  for (const w of opts.workloads ?? []) {
    if (!known.includes(w)) throw new InputError(`bench: unknown workload '${w}' (known: ${known.join(', ')})`);
  }
  if (opts.workers !== undefined && !(Number.isInteger(opts.workers) && opts.workers >= 1)) throw new InputError(`bench: --workers must be a positive integer, got ${opts.workers}`);
  if (opts.iterations !== undefined && !(opts.iterations >= 1)) throw new InputError(`bench: --iterations must be >= 1, got ${opts.iterations}`);
  if (opts.warmup !== undefined && !(opts.warmup >= 0)) throw new InputError(`bench: --warmup must be >= 0, got ${opts.warmup}`);
  if (opts.onnxThreads !== undefined && !(opts.onnxThreads >= 1)) throw new InputError(`bench: --onnx-threads must be >= 1, got ${opts.onnxThreads}`);
  const backends = ['wasm', 'cpu', 'tensorflow'];
  if (opts.backend !== undefined && !backends.includes(opts.backend)) throw new InputError(`bench: --backend must be one of ${backends.join(', ')}, got '${opts.backend}'`);
  const { workers, ...rest } = opts;
  return runBenchComparison({ ...rest, extra: learnerBenchWorkloads(learnerBenchWorkers(workers), opts.seed ?? 0) });
}
