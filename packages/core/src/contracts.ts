import type * as tf from '@tensorflow/tfjs-core';
import type { Rng, RngState } from './rng.js';

/** A set of labelled examples. `x` is [n, ...featureShape]; `y` holds integer labels 0..ways-1. */
export interface LabeledSet {
  x: tf.Tensor;
  y: Int32Array;
}

/**
 * Serialisable, seed-determined description of an N-way k-shot episode: which classes and which
 * items. Loading pixels is a separate step (see @metalearn/data).
 */
export interface EpisodeDescription {
  /** dataset class ids, in the order of the remapped labels 0..ways-1 */
  classes: number[];
  /** per remapped class: item indices of the support examples */
  support: number[][];
  /** per remapped class: item indices of the query examples */
  query: number[][];
}

/** A materialised episode: support and query sets of the same N classes (labels 0..ways-1). */
export interface Episode {
  ways: number;
  shots: number;
  support: LabeledSet;
  query: LabeledSet;
  description?: EpisodeDescription;
  /** dispose every tensor the episode holds */
  dispose?(): void;
}

export type Family = 'metric' | 'memory' | 'optim';

export interface StepResult {
  /** outer (meta) loss, averaged over the meta-batch */
  loss: number;
  /** query accuracy of the meta-batch, after adaptation, in [0, 1] */
  accuracy: number;
  /** extra numeric metrics (learning rates, gradient norms, ...) */
  metrics?: Record<string, number>;
}

/** An ONNX model as bytes plus its I/O description. */
export interface OnnxModel {
  bytes: Uint8Array;
  inputs: { name: string; shape: (number | string)[] }[];
  outputs: { name: string; shape: (number | string)[] }[];
}

/** The result of adapting a learner to a support set. */
export interface FewShotClassifier {
  /** logits [n, ways] for inputs [n, ...featureShape] */
  predict(x: tf.Tensor): tf.Tensor;
  /** the adapted classifier as one ONNX graph (backbone + adapted state as initializers) */
  toOnnx(): OnnxModel;
  dispose(): void;
}

/** Plain, JSON-able tensor snapshot. */
export interface TensorData {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: number[];
}

export interface Checkpoint {
  format: 'metalearn-checkpoint';
  version: 1;
  learner: string;
  config: unknown;
  /** learner parameters (and any buffers such as batch-norm running stats) */
  params: Record<string, TensorData>;
  /** optimiser state (moments, step count, ...) */
  optimizer?: Record<string, TensorData | number>;
  rng?: RngState;
  /** iterations done, episodes seen, ... */
  progress?: Record<string, number>;
  meta?: Record<string, unknown>;
}

/** The plugin contract every meta-learner implements. */
export interface MetaLearner<Cfg = unknown> {
  readonly id: string;
  readonly family: Family;
  readonly config: Cfg;
  /** one outer update over a meta-batch of episodes */
  metaTrainStep(batch: Episode[]): StepResult;
  /** inner loop / prototypes / memory write on a support set */
  adapt(support: LabeledSet, ways: number): FewShotClassifier;
  state(): Checkpoint;
  load(c: Checkpoint): void;
  dispose(): void;
}

/** Accuracy at the k-th presentation of a class when an episode is read as one labelled sequence. */
export interface InstanceAccuracy {
  /** accuracy[k] = accuracy at the k-th presentation of a class (index 0 unused), NaN where unseen */
  accuracy: number[];
  /** count[k] = items scored at the k-th presentation */
  count: number[];
}

/**
 * Optional capability of learners that read a whole episode as one shuffled sequence with labels
 * one step late (MANN, the LSTM meta-learner): support and query items together, no update. The
 * pipeline reports accuracy by instance for them (Santoro et al.'s table).
 */
export interface SequenceEvaluator {
  evaluateSequences(episodes: Episode[], rng: Rng, maxInstance?: number): InstanceAccuracy;
}

export function isSequenceEvaluator<L extends MetaLearner>(l: L): l is L & SequenceEvaluator {
  return typeof (l as Partial<SequenceEvaluator>).evaluateSequences === 'function';
}

/** What a family package registers: an id, its config schema, and a factory. */
export interface LearnerFactory<Cfg = any> {
  readonly id: string;
  readonly family: Family;
  readonly description: string;
  /** JSON Schema for the learner's own options (ajv, defaults applied) */
  readonly configSchema: Record<string, unknown>;
  create(config: Cfg, ctx: LearnerContext): MetaLearner<Cfg>;
}

export interface LearnerContext {
  /** shape of one example, e.g. [28, 28, 1] or [length, channels] */
  inputShape: number[];
  seed: number;
}
