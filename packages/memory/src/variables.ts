/**
 * Plumbing shared by the memory-family learners, whose weights live in tf.Variables: checkpoint
 * (de)serialisation of variables + batch-norm buffers, snapshots.
 */
import * as tf from '@tensorflow/tfjs-core';
import { dataToTensor, tensorToData, type Checkpoint, type Params } from '@metalearn/core';
import { uniqueVarName } from './names.js';

export type Variables = Record<string, tf.Variable>;

/**
 * Trainable variables made from freshly initialised tensors (named `${prefix}/${key}#n`, unique in
 * the process); the initial tensors are disposed.
 */
export function toVariables(init: Params, prefix: string): Variables {
  const out: Variables = {};
  for (const k of Object.keys(init).sort()) out[k] = tf.variable(init[k]!, true, uniqueVarName(`${prefix}/${k}`));
  tf.dispose(Object.values(init));
  return out;
}

/** Fraction of correct predictions over several (prediction, label) pairs of arrays. */
export function pooledAccuracy(preds: { pred: ArrayLike<number>; y: ArrayLike<number> }[]): number {
  let ok = 0;
  let n = 0;
  for (const { pred, y } of preds) for (let i = 0; i < y.length; i++, n++) if (pred[i] === y[i]) ok++;
  return n ? ok / n : NaN;
}

/** Independent copies of a map of tensors (an adapted classifier must survive further training). */
export function cloneAll(m: Params): Params {
  const out: Params = {};
  for (const [k, v] of Object.entries(m)) out[k] = tf.clone(v);
  return out;
}

/** Checkpoint params: the variables by name, buffers as `state:<name>`. */
export function checkpointParams(params: Variables, buffers: Params = {}): Checkpoint['params'] {
  const out: Checkpoint['params'] = {};
  for (const k of Object.keys(params).sort()) out[k] = tensorToData(params[k]!);
  for (const k of Object.keys(buffers).sort()) out[`state:${k}`] = tensorToData(buffers[k]!);
  return out;
}

/**
 * Load checkpoint params written by {@link checkpointParams}: every name and shape is checked first
 * (errors name the learner and the field), then variables are assigned and buffers replaced.
 * Keys listed in `extra` may be present in the checkpoint and are left to the caller.
 */
export function loadCheckpointParams(id: string, c: Checkpoint, params: Variables, buffers: Params = {}, extra: string[] = []): void {
  if (c.learner !== id) throw new Error(`${id}.load: checkpoint is for learner '${c.learner}'`);
  const want = [...Object.keys(params), ...Object.keys(buffers).map((k) => `state:${k}`)].sort();
  const got = Object.keys(c.params).filter((k) => !extra.includes(k)).sort();
  if (want.join() !== got.join()) throw new Error(`${id}.load: checkpoint params [${got.join(', ')}] do not match the model's [${want.join(', ')}]`);
  for (const k of got) {
    const d = c.params[k]!;
    const cur = k.startsWith('state:') ? buffers[k.slice(6)]! : params[k]!;
    if (d.shape.join() !== cur.shape.join()) throw new Error(`${id}.load: params.${k} has shape [${d.shape}], model expects [${cur.shape}] (config mismatch?)`);
  }
  for (const k of got) {
    const t = dataToTensor(c.params[k]!);
    if (k.startsWith('state:')) {
      buffers[k.slice(6)]!.dispose();
      buffers[k.slice(6)] = t;
    } else {
      params[k]!.assign(t);
      t.dispose();
    }
  }
}
