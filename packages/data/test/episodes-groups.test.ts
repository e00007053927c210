import { describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@metalearn/core';
import { DataError, EpisodeSampler, PackedDataset, episodeDescriptions, groupClasses, sampleEpisode, validateEpisodeSpec } from '../src/index.js';

await tf.setBackend('cpu');

/**
 * 3 groups ('alphabets') of 6, 4 and 5 classes (class ids interleaved across groups so that a
 * sampler ignoring the groups would mix them), 4 items each; item i of class c = 100 c + i.
 */
function grouped(): PackedDataset {
  const groupOf = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2, 0];
  const names = ['Alpha', 'Beta', 'Gamma'];
  const n = groupOf.length;
  const classStart = Int32Array.from({ length: n + 1 }, (_, c) => 4 * c);
  const data = new Float32Array(4 * n * 4);
  for (let c = 0; c < n; c++) for (let i = 0; i < 4; i++) data.fill(100 * c + i, (4 * c + i) * 4, (4 * c + i + 1) * 4);
  return new PackedDataset({
    name: 'grouped',
    featureShape: [2, 2, 1],
    data,
    classStart,
    classes: groupOf.map((g, c) => ({ name: `${names[g]}/c${c}`, alphabet: names[g] })),
    splits: { all: Array.from({ length: n }, (_, c) => c), small: [0, 1, 2, 3, 4, 5, 7, 10] },
  });
}

const alphabetOf = (ds: PackedDataset, c: number) => ds.classInfo(c)['alphabet'];

describe('withinGroup episodes', () => {
  it('groups classes by a metadata field', () => {
    const g = groupClasses(grouped(), grouped().splits['all']!, 'alphabet');
    expect(g.names).toEqual(['Alpha', 'Beta', 'Gamma']);
    expect(g.classes.map((l) => l.length)).toEqual([6, 4, 5]);
  });

  it('draws every class of an episode from one group, cycling through all groups', () => {
    const ds = grouped();
    const spec = { ways: 4, shots: 1, queries: 2, withinGroup: 'alphabet' };
    const s = new EpisodeSampler(ds, 'all', spec, 3);
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) {
      const d = s.describe(i);
      expect(d.classes).toHaveLength(4);
      expect(new Set(d.classes).size).toBe(4);
      const groups = new Set(d.classes.map((c) => alphabetOf(ds, c)));
      expect(groups.size).toBe(1);
      seen.push(alphabetOf(ds, d.classes[0]!) as string);
    }
    // each block of 3 consecutive episodes (from a multiple of 3) covers the 3 groups once
    for (let k = 0; k < 10; k++) expect(new Set(seen.slice(3 * k, 3 * k + 3)).size).toBe(3);
    // deterministic per (seed, index)
    const again = new EpisodeSampler(ds, 'all', spec, 3);
    expect(again.describe(17)).toEqual(s.describe(17));
    expect([...episodeDescriptions(ds, spec, 3, { split: 'all', start: 5, count: 2 })]).toEqual([s.describe(5), s.describe(6)]);
    // without withinGroup the same seed mixes groups in some episode (the option does something)
    const mixed = new EpisodeSampler(ds, 'all', { ways: 4, shots: 1, queries: 2 }, 3);
    const nMixed = Array.from({ length: 30 }, (_, i) => new Set(mixed.describe(i).classes.map((c) => alphabetOf(ds, c))).size).filter((k) => k > 1).length;
    expect(nMixed).toBeGreaterThan(20);
  });

  it('materialises within-group episodes with the chosen classes', () => {
    const ds = grouped();
    const ep = new EpisodeSampler(ds, 'all', { ways: 4, shots: 1, queries: 1, withinGroup: 'alphabet' }, 0).episode(1);
    try {
      expect(ep.support.x.shape).toEqual([4, 2, 2, 1]);
      const xs = ep.support.x.dataSync();
      ep.description!.classes.forEach((c, k) => expect(Math.floor(xs[k * 4]! / 100)).toBe(c));
      expect(new Set(ep.description!.classes.map((c) => alphabetOf(ds, c))).size).toBe(1);
    } finally {
      ep.dispose();
    }
  });

  it('sampleEpisode and variable episodes stay within one group', () => {
    const ds = grouped();
    const rng = new Rng(1);
    for (let i = 0; i < 10; i++) {
      const d = sampleEpisode(ds, 'all', { ways: 4, shots: 1, queries: 1, withinGroup: 'alphabet' }, rng);
      expect(new Set(d.classes.map((c) => alphabetOf(ds, c))).size).toBe(1);
    }
    const v = new EpisodeSampler(ds, 'all', { ways: 6, shots: 1, queries: 1, withinGroup: 'alphabet', variable: { minWays: 3 } }, 2);
    for (let i = 0; i < 12; i++) {
      const d = v.describe(i);
      expect(d.classes.length).toBeGreaterThanOrEqual(3);
      expect(new Set(d.classes.map((c) => alphabetOf(ds, c))).size).toBe(1);
    }
  });

  it('fails with a DataError naming the groups with fewer classes than ways', () => {
    const ds = grouped();
    // 5-way: Beta has only 4 classes
    expect(() => new EpisodeSampler(ds, 'all', { ways: 5, shots: 1, queries: 1, withinGroup: 'alphabet' }, 0)).toThrow(DataError);
    expect(() => validateEpisodeSpec(ds, 'all', { ways: 5, shots: 1, queries: 1, withinGroup: 'alphabet' })).toThrow(
      /withinGroup 'alphabet': 1 of the 3 groups of split 'all' have fewer than ways = 5 classes: 'Beta' \(4\)/,
    );
    // the pool decides the group sizes: split 'small' has Alpha 3, Beta 3, Gamma 2
    expect(() => validateEpisodeSpec(ds, 'small', { ways: 3, shots: 1, queries: 1, withinGroup: 'alphabet' })).toThrow(/'Gamma' \(2\)/);
    expect(() => validateEpisodeSpec(ds, 'small', { ways: 2, shots: 1, queries: 1, withinGroup: 'alphabet' })).not.toThrow();
    // a field no class has
    expect(() => validateEpisodeSpec(ds, 'all', { ways: 2, shots: 1, queries: 1, withinGroup: 'script' })).toThrow(/class 0 \('Alpha\/c0'\) has no 'script' field \(its metadata fields: alphabet\)/);
    expect(() => validateEpisodeSpec(ds, 'all', { ways: 2, shots: 1, queries: 1, withinGroup: '' })).toThrow(/withinGroup = ""/);
  });
});
