/**
 * Shared pieces of the reproduction runs: Omniglot loading, episode sampling with translation
 * augmentation, timed training with a JSONL curve, and the summary file. Scripts only (the library
 * itself does not depend on @metalearn/data).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng, initEngine, type Episode } from '@metalearn/core';
import { EpisodeSampler, augmentEpisode, loadOmniglot, type ClassDataset } from '@metalearn/data';

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

/** A training episode with every image translated by up to ±maxShift pixels (Santoro's augmentation). */
export function augmented(sampler: EpisodeSampler, index: number, maxShift: number, rng: Rng): Episode {
  return augmentEpisode(sampler.episode(index), { translate: maxShift }, rng);
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

/** A JSON object from environment variable `name` ({} when unset); bad JSON names the variable. */
export function envJson(name: string): Record<string, unknown> {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new Error(`${name}: not valid JSON (${(e as Error).message}): ${raw}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${name}: expected a JSON object, got ${raw}`);
  return v as Record<string, unknown>;
}
