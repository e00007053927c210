import { describe, expect, it, afterAll } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { take, toArray, firstValueFrom, asapScheduler, bufferCount, map } from 'rxjs';
import { join } from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import { Rng, type Episode } from '@metalearn/core';
import {
  PackedDataset,
  SyntheticGlyphs,
  EpisodeSampler,
  sampleEpisode,
  materialize,
  episodes$,
  episodeDescriptions,
  toSequence,
  makeEpisodeSet,
  writeEpisodeSet,
  readEpisodeSet,
  TaskDataset,
  NWays,
  KShots,
  QueryCount,
  RemapLabels,
  FilterLabels,
  VariableWaysShots,
  splitClasses,
  withSplits,
  DataError,
} from '../src/index.js';
import { tempDir } from './helpers.js';

await tf.setBackend('cpu');

/** 12 classes; class c has 6 + (c % 4) items; item i of class c = constant 100*c + i. */
function tiny(): PackedDataset {
  const counts = Array.from({ length: 12 }, (_, c) => 6 + (c % 4));
  const classStart = new Int32Array(13);
  counts.forEach((n, c) => (classStart[c + 1] = classStart[c]! + n));
  const fs = 2 * 2 * 1;
  const data = new Float32Array(classStart[12]! * fs);
  counts.forEach((n, c) => {
    for (let i = 0; i < n; i++) data.fill(100 * c + i, (classStart[c]! + i) * fs, (classStart[c]! + i + 1) * fs);
  });
  return new PackedDataset({
    name: 'tiny',
    featureShape: [2, 2, 1],
    data,
    classStart,
    classes: counts.map((_, c) => ({ name: `c${c}` })),
    splits: { train: [0, 1, 2, 3, 4, 5, 6, 7], test: [8, 9, 10, 11] },
  });
}

const spec = { ways: 3, shots: 2, queries: 3 };
const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('sampling', () => {
  it('is deterministic per seed and index, and differs across seeds', () => {
    const ds = tiny();
    const a = new EpisodeSampler(ds, 'train', spec, 7);
    const b = new EpisodeSampler(ds, 'train', spec, 7);
    const c = new EpisodeSampler(ds, 'train', spec, 8);
    expect(a.describe(5)).toEqual(b.describe(5));
    expect(JSON.stringify([0, 1, 2, 3].map((i) => a.describe(i)))).not.toEqual(JSON.stringify([0, 1, 2, 3].map((i) => c.describe(i))));
    // the same first episodes as the generator and the observable produce
    const gen = [...episodeDescriptions(ds, spec, 7, { split: 'train', count: 3 })];
    expect(gen).toEqual([0, 1, 2].map((i) => a.describe(i)));
    // fixed, machine-independent value (seedrandom ARC4 via Rng): printed once, pinned here
    expect(a.describe(0)).toEqual({ classes: [2, 3, 1], support: [[3, 0], [4, 6], [2, 6]], query: [[5, 6, 4], [7, 3, 8], [4, 5, 0]] });
  });

  it('draws distinct classes from the split and distinct items per class', () => {
    const ds = tiny();
    for (let s = 0; s < 30; s++) {
      const d = sampleEpisode(ds, 'test', spec, new Rng(s));
      expect(d.classes).toHaveLength(3);
      expect(new Set(d.classes).size).toBe(3);
      for (const c of d.classes) expect([8, 9, 10, 11]).toContain(c);
      d.classes.forEach((c, i) => {
        expect(d.support[i]).toHaveLength(2);
        expect(d.query[i]).toHaveLength(3);
        const all = [...d.support[i]!, ...d.query[i]!];
        expect(new Set(all).size).toBe(5);
        for (const it of all) expect(it).toBeLessThan(ds.itemCount(c));
      });
    }
  });

  it('materialises NHWC tensors with labels remapped to 0..N-1 in class order', () => {
    const ds = tiny();
    const d = sampleEpisode(ds, 'train', spec, new Rng(3));
    const ep = materialize(ds, d);
    expect(ep.ways).toBe(3);
    expect(ep.shots).toBe(2);
    expect(ep.support.x.shape).toEqual([6, 2, 2, 1]);
    expect(ep.query.x.shape).toEqual([9, 2, 2, 1]);
    expect(ep.support.x.dtype).toBe('float32');
    expect(Array.from(ep.support.y)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(Array.from(ep.query.y)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2]);
    const sx = ep.support.x.dataSync();
    const qx = ep.query.x.dataSync();
    // every pixel encodes (class, item): label l must be class d.classes[l]
    for (let n = 0; n < 6; n++) {
      const l = ep.support.y[n]!;
      expect(sx[n * 4]).toBe(100 * d.classes[l]! + d.support[l]![n % 2]!);
    }
    for (let n = 0; n < 9; n++) {
      const l = ep.query.y[n]!;
      expect(qx[n * 4]).toBe(100 * d.classes[l]! + d.query[l]![n % 3]!);
    }
    ep.dispose!();
    expect(ep.support.x.isDisposed).toBe(true);
  });

  it('variable ways/shots (Meta-Dataset style) stays within bounds', () => {
    const ds = tiny();
    const v = { ways: 6, shots: 1, queries: 2, variable: { minWays: 2, maxShots: 4 } };
    const seenWays = new Set<number>();
    const sampler = new EpisodeSampler(ds, undefined, v, 1);
    for (let i = 0; i < 60; i++) {
      const d = sampler.describe(i);
      seenWays.add(d.classes.length);
      expect(d.classes.length).toBeGreaterThanOrEqual(2);
      expect(d.classes.length).toBeLessThanOrEqual(6);
      d.classes.forEach((c, k) => {
        expect(d.support[k]!.length).toBeGreaterThanOrEqual(1);
        expect(d.support[k]!.length).toBeLessThanOrEqual(4);
        expect(d.query[k]).toHaveLength(2);
        expect(d.support[k]!.length + 2).toBeLessThanOrEqual(ds.itemCount(c));
      });
    }
    expect(seenWays.size).toBeGreaterThan(2);
  });

  it('bad specs give clear errors: N > classes, class too small, bad split name', () => {
    const ds = tiny();
    expect(() => new EpisodeSampler(ds, 'test', { ways: 5, shots: 1, queries: 1 }, 0)).toThrow(
      /tiny: ways = 5 is larger than the 4 classes of split 'test'/,
    );
    expect(() => new EpisodeSampler(ds, 'train', { ways: 2, shots: 3, queries: 4 }, 0)).toThrow(
      /class 0 \('c0'\) in split 'train' has 6 items, fewer than shots \+ queries = 3 \+ 4 = 7/,
    );
    expect(() => new EpisodeSampler(ds, 'nope', spec, 0)).toThrow(/no split named 'nope' \(available: train, test\)/);
    expect(() => new EpisodeSampler(ds, 'train', { ways: 0, shots: 1, queries: 1 }, 0)).toThrow(DataError);
  });
});

describe('episodes$', () => {
  it('is cold and deterministic, stops on unsubscribe', async () => {
    const ds = tiny();
    const run = () => firstValueFrom(episodes$(ds, spec, 11, { split: 'train' }).pipe(take(4), map((e) => { const d = e.description; e.dispose!(); return d; }), toArray()));
    const a = await run();
    const b = await run();
    expect(a).toEqual(b);
    expect(a).toHaveLength(4);
    const before = tf.memory().numTensors;
    const batches = await firstValueFrom(episodes$(ds, spec, 11, { split: 'train' }).pipe(bufferCount(2), take(2), map((eps: Episode[]) => { eps.forEach((e) => e.dispose!()); return eps.length; }), toArray()));
    expect(batches).toEqual([2, 2]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('count completes the stream; a scheduler makes it asynchronous with the same episodes', async () => {
    const ds = tiny();
    const sync = await firstValueFrom(episodes$(ds, spec, 2, { count: 3 }).pipe(map((e) => { e.dispose!(); return e.description; }), toArray()));
    const asyncEps = await firstValueFrom(episodes$(ds, spec, 2, { count: 3, scheduler: asapScheduler }).pipe(map((e) => { e.dispose!(); return e.description; }), toArray()));
    expect(sync).toHaveLength(3);
    expect(asyncEps).toEqual(sync);
  });
});

describe('toSequence (MANN)', () => {
  it('emits (x_t, one-hot y_{t-1}) in a shuffled order with hidden query labels', () => {
    const ds = tiny();
    const ep = materialize(ds, sampleEpisode(ds, 'train', spec, new Rng(4)));
    const seq = toSequence(ep, new Rng(5));
    expect(seq.x.shape).toEqual([15, 2, 2, 1]);
    expect(seq.yPrev.shape).toEqual([15, 3]);
    expect(Array.from(seq.isQuery)).toEqual([...Array(6).fill(0), ...Array(9).fill(1)]);
    const yp = seq.yPrev.arraySync() as number[][];
    expect(yp[0]).toEqual([0, 0, 0]);
    for (let t = 1; t < 15; t++) {
      const expected = [0, 0, 0];
      if (!seq.isQuery[t - 1]) expected[seq.y[t - 1]!] = 1;
      expect(yp[t]).toEqual(expected);
    }
    // x_t is the item with label y_t: pixel value encodes the class
    const xs = seq.x.dataSync();
    const desc = ep.description!;
    for (let t = 0; t < 15; t++) expect(Math.floor(xs[t * 4]! / 100)).toBe(desc.classes[seq.y[t]!]);
    // the support order is a permutation, not the class-major order
    expect(Array.from(seq.y.slice(0, 6))).not.toEqual([0, 0, 1, 1, 2, 2]);
    const revealed = toSequence(ep, new Rng(5), { revealQueryLabels: true });
    expect((revealed.yPrev.arraySync() as number[][])[14]!.reduce((a, b) => a + b, 0)).toBe(1);
    seq.dispose();
    revealed.dispose();
    ep.dispose!();
  });
});

describe('episode set files', () => {
  it('round-trips and is checked against the dataset', () => {
    const ds = tiny();
    const set = makeEpisodeSet(ds, 'test', spec, 99, 5);
    const file = join(tmp.dir, 'eval.json');
    writeEpisodeSet(file, set);
    const back = readEpisodeSet(file, ds);
    expect(back).toEqual(set);
    expect(back.episodes[2]).toEqual(new EpisodeSampler(ds, 'test', spec, 99).describe(2));
    // another dataset layout is refused
    const other = withSplits(tiny(), { all: [0] });
    expect(other.fingerprint).toBe(ds.fingerprint);
    const glyphs = new SyntheticGlyphs({ numClasses: 12, itemsPerClass: 9 });
    expect(() => readEpisodeSet(file, glyphs)).toThrow(/was made from dataset 'tiny'/);
    // damaged files name the field
    const obj = JSON.parse(readFileSync(file, 'utf8'));
    obj.episodes[1].support[0][0] = 55;
    writeFileSync(file, JSON.stringify(obj));
    expect(() => readEpisodeSet(file, ds)).toThrow(/eval\.json: episodes\[1\]: support\[0\]\[0\] = 55 is not an item of class/);
    obj.episodes[1].support[0][0] = 'x';
    writeFileSync(file, JSON.stringify(obj));
    expect(() => readEpisodeSet(file)).toThrow(/field 'episodes\[1\]' must be/);
    writeFileSync(file, '{"format": "metalearn-episode-set", ');
    expect(() => readEpisodeSet(file)).toThrow(/is not valid JSON/);
  });
});

describe('task transforms (learn2learn style)', () => {
  it('NWays/KShots/QueryCount/FilterLabels/RemapLabels', () => {
    const ds = tiny();
    const tasks = new TaskDataset(ds, [FilterLabels('train'), NWays(4), KShots(1), QueryCount(2), RemapLabels(false)], { seed: 3 });
    const d = tasks.describe(0);
    expect(d.classes).toHaveLength(4);
    expect([...d.classes].sort((a, b) => a - b)).toEqual(d.classes);
    for (const c of d.classes) expect(c).toBeLessThan(8);
    const ep = tasks.sample(0);
    expect(ep.support.x.shape).toEqual([4, 2, 2, 1]);
    expect(ep.query.x.shape).toEqual([8, 2, 2, 1]);
    ep.dispose!();
    const finite = new TaskDataset(ds, [NWays(2), KShots(1), QueryCount(1)], { seed: 1, numTasks: 3 });
    expect(finite.describe(4)).toEqual(finite.describe(1));
    expect(() => new TaskDataset(ds, [NWays(2)])).toThrow(/shots, queries not set/);
    const v = new TaskDataset(ds, [NWays(5), KShots(1), QueryCount(1), VariableWaysShots({ minWays: 2 })], { seed: 1 });
    expect(v.describe(0).classes.length).toBeGreaterThanOrEqual(2);
  });

  it('splitClasses gives disjoint seeded parts covering all classes', () => {
    const s1 = splitClasses(50, { train: 0.6, val: 0.2, test: 0.2 }, 4);
    const s2 = splitClasses(50, { train: 0.6, val: 0.2, test: 0.2 }, 4);
    expect(s1).toEqual(s2);
    expect(s1['train']).toHaveLength(30);
    expect(s1['val']).toHaveLength(10);
    const all = [...s1['train']!, ...s1['val']!, ...s1['test']!].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});
