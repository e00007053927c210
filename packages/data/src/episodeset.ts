import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EpisodeDescription } from '@metalearn/core';
import type { ClassDataset } from './dataset.js';
import { DataError, briefCause } from './errors.js';
import { EpisodeSampler, checkDescription, type ClassPool, type EpisodeSpec } from './episodes.js';

/** A fixed set of evaluation episodes, as stored in an episode-set JSON file. */
export interface EpisodeSet {
  format: 'metalearn-episode-set';
  version: 1;
  dataset: { name: string; fingerprint: string; numClasses: number };
  split: string | number[] | null;
  spec: EpisodeSpec;
  seed: number | string;
  episodes: EpisodeDescription[];
}

/** Draw `count` episodes (indices 0..count-1 of the seed) into an episode set. */
export function makeEpisodeSet(ds: ClassDataset, pool: ClassPool, spec: EpisodeSpec, seed: number | string, count: number): EpisodeSet {
  const sampler = new EpisodeSampler(ds, pool, spec, seed);
  const episodes: EpisodeDescription[] = [];
  for (let i = 0; i < count; i++) episodes.push(sampler.describe(i));
  return {
    format: 'metalearn-episode-set',
    version: 1,
    dataset: { name: ds.name, fingerprint: ds.fingerprint, numClasses: ds.numClasses },
    split: pool === undefined ? null : typeof pool === 'string' ? pool : [...pool],
    spec,
    seed,
    episodes,
  };
}

/** Write an episode set as JSON (one episode per line), atomically. */
export function writeEpisodeSet(file: string, set: EpisodeSet): void {
  const { episodes, ...head } = set;
  const body =
    JSON.stringify({ ...head, episodes: [] }, null, 1).replace(/"episodes": \[\]\n\}$/, '"episodes": [\n') +
    episodes.map((e) => ' ' + JSON.stringify(e)).join(',\n') +
    '\n ]\n}\n';
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${process.hrtime.bigint()}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/**
 * Read an episode-set file. With `ds`, also checks that it was made from the same dataset layout
 * (fingerprint) and that every class id / item index is valid. Errors name the file and field.
 */
export function readEpisodeSet(file: string, ds?: ClassDataset): EpisodeSet {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read episode set ${file}: ${briefCause(e)}`, { file, cause: e });
  }
  let obj: any;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new DataError(`episode set ${file} is not valid JSON: ${briefCause(e)}`, { file, cause: e });
  }
  const fail = (field: string, want: string) =>
    new DataError(`episode set ${file}: field '${field}' ${want}`, { file, expected: want });
  if (obj?.format !== 'metalearn-episode-set') throw fail('format', "must be 'metalearn-episode-set'");
  if (obj.version !== 1) throw fail('version', `must be 1, got ${JSON.stringify(obj.version)}`);
  if (typeof obj.dataset?.name !== 'string' || typeof obj.dataset?.fingerprint !== 'string') {
    throw fail('dataset', 'must be {name, fingerprint, numClasses}');
  }
  if (typeof obj.spec?.ways !== 'number') throw fail('spec', 'must be {ways, shots, queries}');
  if (!Array.isArray(obj.episodes)) throw fail('episodes', 'must be an array of episode descriptions');
  obj.episodes.forEach((e: any, i: number) => {
    const ok =
      e && Array.isArray(e.classes) && Array.isArray(e.support) && Array.isArray(e.query) &&
      e.classes.every((c: unknown) => Number.isInteger(c)) &&
      [...e.support, ...e.query].every((l: unknown) => Array.isArray(l) && l.every((x) => Number.isInteger(x)));
    if (!ok) throw fail(`episodes[${i}]`, 'must be {classes: int[], support: int[][], query: int[][]}');
  });
  if (ds) {
    if (obj.dataset.fingerprint !== ds.fingerprint) {
      throw new DataError(
        `episode set ${file} was made from dataset '${obj.dataset.name}' (fingerprint ${obj.dataset.fingerprint}), ` +
          `not from the loaded '${ds.name}' (fingerprint ${ds.fingerprint}): class or item layout differs`,
        { file },
      );
    }
    obj.episodes.forEach((e: EpisodeDescription, i: number) => checkDescription(ds, e, `episode set ${file}: episodes[${i}]`));
  }
  return obj as EpisodeSet;
}
