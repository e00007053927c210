/**
 * Shared pieces of the reproduction runs: Omniglot loading, episode sampling with translation
 * augmentation, timed training with a JSONL curve, and the summary file. Scripts only (the library
 * itself does not depend on @metalearn/data).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, initEngine, type Episode } from '@metalearn/core';
import { EpisodeSampler, loadOmniglot, type ClassDataset } from '@metalearn/data';

export const OMNIGLOT_ROOT = path.resolve(__dirname, '../../../../shared/data/omniglot');

export function haveOmniglot(): boolean {
  return fs.existsSync(path.join(OMNIGLOT_ROOT, 'images_background')) || fs.existsSync(path.join(OMNIGLOT_ROOT, 'images_background.zip'));
}

export async function setup(): Promise<void> {
  await initEngine({ backend: (process.env['METALEARN_BACKEND'] as 'wasm' | 'cpu' | undefined) ?? 'wasm' });
}

export async function omniglot(size: number): Promise<ClassDataset> {
  // Santoro et al.: 1200 training / 423 test characters (the 'maml' random split), rotations as new classes
  return loadOmniglot({ root: OMNIGLOT_ROOT, size, rotations: true, split: 'maml' });
}

/** Random translation of every image by up to ±maxShift pixels (zero fill); images [n, h, w, c]. */
export function translate(x: tf.Tensor, maxShift: number, rng: Rng): tf.Tensor {
  if (maxShift <= 0) return x;
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const src = x.dataSync();
  const out = new Float32Array(src.length);
  for (let i = 0; i < n; i++) {
    const dy = rng.int(2 * maxShift + 1) - maxShift;
    const dx = rng.int(2 * maxShift + 1) - maxShift;
    for (let r = 0; r < h; r++) {
      const sr = r - dy;
      if (sr < 0 || sr >= h) continue;
      for (let q = 0; q < w; q++) {
        const sq = q - dx;
        if (sq < 0 || sq >= w) continue;
        for (let k = 0; k < c; k++) out[((i * h + r) * w + q) * c + k] = src[((i * h + sr) * w + sq) * c + k]!;
      }
    }
  }
  return tf.tensor(out, x.shape);
}

export function augmented(sampler: EpisodeSampler, index: number, maxShift: number, rng: Rng): Episode {
  const e = sampler.episode(index);
  if (maxShift <= 0) return e;
  const sx = translate(e.support.x, maxShift, rng);
  const qx = e.query.x.shape[0] > 0 ? translate(e.query.x, maxShift, rng) : e.query.x;
  e.dispose?.();
  return { ...e, support: { x: sx, y: e.support.y }, query: { x: qx, y: e.query.y }, dispose: () => tf.dispose([sx, qx]) };
}

export class RunLog {
  readonly dir: string;
  constructor(name: string) {
    this.dir = path.resolve(__dirname, '../repro', name);
    fs.mkdirSync(this.dir, { recursive: true });
    fs.writeFileSync(path.join(this.dir, 'metrics.jsonl'), '');
  }
  log(rec: Record<string, unknown>): void {
    fs.appendFileSync(path.join(this.dir, 'metrics.jsonl'), JSON.stringify(rec) + '\n');
    console.log(JSON.stringify(rec));
  }
  summary(s: Record<string, unknown>): void {
    fs.writeFileSync(path.join(this.dir, 'summary.json'), JSON.stringify(s, null, 2) + '\n');
    console.log('SUMMARY', JSON.stringify(s));
  }
}

export const minutes = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
