import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Checkpoint, TensorData } from './contracts.js';

/** Snapshot a tensor as plain JSON-able data. */
export function tensorToData(t: tf.Tensor): TensorData {
  const dtype = t.dtype === 'int32' ? 'int32' : 'float32';
  return { shape: [...t.shape], dtype, data: Array.from(t.dataSync() as ArrayLike<number>) };
}

export function dataToTensor(d: TensorData): tf.Tensor {
  return d.dtype === 'int32' ? tf.tensor(Int32Array.from(d.data), d.shape, 'int32') : tf.tensor(Float32Array.from(d.data), d.shape, 'float32');
}

export function tensorsToData(m: Record<string, tf.Tensor>): Record<string, TensorData> {
  const out: Record<string, TensorData> = {};
  for (const k of Object.keys(m).sort()) out[k] = tensorToData(m[k]!);
  return out;
}

export function dataToTensors(m: Record<string, TensorData>): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const k of Object.keys(m)) out[k] = dataToTensor(m[k]!);
  return out;
}

/**
 * Write `data` to `file` atomically: write a temporary file beside it, fsync it, rename it over the
 * target, then fsync the directory. A crash at any point leaves either the old file or the new one.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // directories cannot be fsynced on every platform; the rename itself is atomic
  }
}

/** Save a checkpoint (params + optimiser state + RNG state) to one file, atomically. */
export function saveCheckpoint(file: string, c: Checkpoint): void {
  writeFileAtomic(file, JSON.stringify(c));
}

/** Load and check a checkpoint file; errors name the file and what is wrong. */
export function loadCheckpoint(file: string): Checkpoint {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`checkpoint ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let c: unknown;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new Error(`checkpoint ${file}: not valid JSON (${(e as Error).message}); the file is corrupt or not a checkpoint`);
  }
  const ck = c as Partial<Checkpoint>;
  if (!ck || typeof ck !== 'object' || ck.format !== 'metalearn-checkpoint') {
    throw new Error(`checkpoint ${file}: field 'format' must be 'metalearn-checkpoint'`);
  }
  if (ck.version !== 1) throw new Error(`checkpoint ${file}: unsupported version ${String(ck.version)} (expected 1)`);
  if (typeof ck.learner !== 'string') throw new Error(`checkpoint ${file}: field 'learner' must be a string`);
  if (!ck.params || typeof ck.params !== 'object') throw new Error(`checkpoint ${file}: field 'params' is missing`);
  for (const [k, v] of Object.entries(ck.params)) {
    const n = (v as TensorData).shape?.reduce((a, b) => a * b, 1);
    if (!Array.isArray((v as TensorData).data) || n !== (v as TensorData).data.length) {
      throw new Error(`checkpoint ${file}: params.${k} has ${(v as TensorData).data?.length ?? 'no'} values for shape [${(v as TensorData).shape}]`);
    }
  }
  return ck as Checkpoint;
}
