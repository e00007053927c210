import { describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { firstValueFrom, take, toArray, map } from 'rxjs';
import { createRequire } from 'node:module';
import { Rng } from '@metalearn/core';
import {
  SyntheticGlyphs,
  SinusoidTasks,
  EpisodeSampler,
  createDataset,
  datasetConfigSchema,
  listDatasetTypes,
  DataError,
  type ClassDataset,
} from '../src/index.js';

await tf.setBackend('cpu');

/** nearest-prototype accuracy in pixel space over n episodes */
function pixelProtoAccuracy(ds: ClassDataset, ways: number, shots: number, n: number): number {
  const s = new EpisodeSampler(ds, 'test', { ways, shots, queries: 5 }, 0);
  const f = ds.featureSize;
  const buf = new Float32Array(f);
  let ok = 0, tot = 0;
  for (let e = 0; e < n; e++) {
    const d = s.describe(e);
    const protos = d.support.map((items, k) => {
      const p = new Float32Array(f);
      for (const it of items) {
        ds.readItem(d.classes[k]!, it, buf);
        for (let i = 0; i < f; i++) p[i]! += buf[i]! / items.length;
      }
      return p;
    });
    d.query.forEach((items, k) =>
      items.forEach((it) => {
        ds.readItem(d.classes[k]!, it, buf);
        let best = -1, bd = Infinity;
        protos.forEach((p, j) => {
          let s2 = 0;
          for (let i = 0; i < f; i++) s2 += (p[i]! - buf[i]!) ** 2;
          if (s2 < bd) [bd, best] = [s2, j];
        });
        ok += best === k ? 1 : 0;
        tot++;
      }),
    );
  }
  return ok / tot;
}

describe('synthetic glyphs', () => {
  it('is deterministic from the seed, independent of access order', () => {
    const a = new SyntheticGlyphs({ numClasses: 30, seed: 5 });
    const b = new SyntheticGlyphs({ numClasses: 30, seed: 5 });
    const c = new SyntheticGlyphs({ numClasses: 30, seed: 6 });
    const x = new Float32Array(784), y = new Float32Array(784), z = new Float32Array(784);
    b.readItem(29, 3, y); // render a later class first
    b.readItem(7, 3, y);
    a.readItem(7, 3, x);
    c.readItem(7, 3, z);
    expect(Array.from(x)).toEqual(Array.from(y));
    expect(Array.from(x)).not.toEqual(Array.from(z));
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.splits).toEqual(b.splits);
    // pinned pixel sum: same images on every machine
    expect(x.reduce((s, v) => s + v, 0)).toBeCloseTo(23.59608, 3);
  });

  it('looks like characters: ink in [0,1], anti-aliased, drawers differ', () => {
    const g = new SyntheticGlyphs({ numClasses: 20 });
    expect(g.featureShape).toEqual([28, 28, 1]);
    const x = new Float32Array(784), y = new Float32Array(784);
    for (let c = 0; c < 20; c++) {
      g.readItem(c, 0, x);
      g.readItem(c, 1, y);
      const ink = x.reduce((s, v) => s + v, 0) / 784;
      expect(ink).toBeGreaterThan(0.03);
      expect(ink).toBeLessThan(0.45);
      expect(Math.min(...x)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...x)).toBeLessThanOrEqual(1);
      expect(x.some((v) => v > 0.05 && v < 0.95)).toBe(true); // anti-aliased edges
      expect(Array.from(x)).not.toEqual(Array.from(y));
      expect(g.classInfo(c).strokes).toBeInstanceOf(Array);
    }
    const s = g.splits;
    const all = [...s['train']!, ...s['val']!, ...s['test']!];
    expect(new Set(all).size).toBe(20);
    expect(all).toHaveLength(20);
  });

  it('is learnable but not trivial: pixel-space prototypes well above chance, far from perfect', () => {
    const g = new SyntheticGlyphs({ numClasses: 150 });
    const a1 = pixelProtoAccuracy(g, 5, 1, 60);
    const a5 = pixelProtoAccuracy(g, 5, 5, 60);
    // chance is 0.2; Omniglot gives ~0.42 (1-shot) with this baseline
    expect(a1).toBeGreaterThan(0.3);
    expect(a1).toBeLessThan(0.65);
    expect(a5).toBeGreaterThan(a1);
    expect(a5).toBeLessThan(0.95);
  });

  it('bad options and out-of-range reads are clear', () => {
    expect(() => new SyntheticGlyphs({ numClasses: 0 })).toThrow(/numClasses = 0, expected a positive integer/);
    const g = new SyntheticGlyphs({ numClasses: 3, itemsPerClass: 4 });
    expect(() => g.readItem(3, 0, new Float32Array(784))).toThrow(/class id 3 out of range/);
    expect(() => g.readItem(0, 4, new Float32Array(784))).toThrow(/item 4 out of range for class 0/);
    expect(() => new EpisodeSampler(g, undefined, { ways: 2, shots: 3, queries: 2 }, 0)).toThrow(/has 4 items, fewer than shots \+ queries = 3 \+ 2 = 5/);
  });
});

describe('sinusoid', () => {
  it('samples MAML sinusoid tasks deterministically with correct values', async () => {
    const s = new SinusoidTasks();
    const e1 = s.episode(10, 5, 3, 0);
    const e2 = s.episode(10, 5, 3, 0);
    expect(e1.description).toEqual(e2.description);
    const d = e1.description;
    expect(d.amplitude).toBeGreaterThanOrEqual(0.1);
    expect(d.amplitude).toBeLessThan(5);
    expect(d.phase).toBeGreaterThanOrEqual(0);
    expect(d.phase).toBeLessThan(Math.PI);
    expect(e1.support.x.shape).toEqual([10, 1]);
    expect(e1.query.y.shape).toEqual([5, 1]);
    const xs = e1.support.x.dataSync(), ys = e1.support.y.dataSync();
    for (let i = 0; i < 10; i++) {
      expect(xs[i]).toBeGreaterThanOrEqual(-5);
      expect(xs[i]).toBeLessThan(5);
      expect(ys[i]).toBeCloseTo(d.amplitude * Math.sin(xs[i]! - d.phase), 5);
    }
    e1.dispose();
    e2.dispose();
    const eps = await firstValueFrom(s.episodes$({ shots: 5, queries: 5 }, 1).pipe(take(3), map((e) => { e.dispose(); return e.description.amplitude; }), toArray()));
    expect(new Set(eps).size).toBe(3);
    expect(() => s.describe(0, 1, new Rng(0))).toThrow(DataError);
  });
});

describe('registry', () => {
  it('creates every type by name and rejects unknown ones', async () => {
    expect(listDatasetTypes()).toEqual(['idx', 'image-folder', 'omniglot', 'sinusoid', 'synthetic-glyphs', 'uea']);
    const g = await createDataset({ type: 'synthetic-glyphs', numClasses: 10, seed: 2 });
    expect(g.kind).toBe('classification');
    const s = await createDataset({ type: 'sinusoid' });
    expect(s.kind).toBe('regression');
    const split = (await createDataset({ type: 'synthetic-glyphs', numClasses: 10, classSplit: { fractions: { a: 0.5, b: 0.5 }, seed: 1 } })) as ClassDataset;
    expect(Object.keys(split.splits).sort()).toEqual(['a', 'all', 'b']);
    expect(split.splits['a']).toHaveLength(5);
    expect(split.numClasses).toBe(10);
    expect(split.itemCount(0)).toBe(20);
    await expect(createDataset({ type: 'cifar' })).rejects.toThrow(/unknown type 'cifar' \(expected one of idx, image-folder, omniglot, sinusoid, synthetic-glyphs, uea\)/);
    await expect(createDataset({ type: 'omniglot' } as never)).rejects.toThrow(/option 'root'/);
  });

  it('exports a JSON Schema that ajv compiles and that matches the options', () => {
    const Ajv = createRequire(import.meta.url)('ajv').default ?? createRequire(import.meta.url)('ajv');
    const ajv = new Ajv({ strict: false, useDefaults: true });
    const validate = ajv.compile(datasetConfigSchema());
    expect(validate({ type: 'omniglot', root: '/x', split: 'maml' })).toBe(true);
    expect(validate({ type: 'synthetic-glyphs', numClasses: 50 })).toBe(true);
    expect(validate({ type: 'uea', root: '/x', name: 'BasicMotions', normalize: 'instance' })).toBe(true);
    expect(validate({ type: 'omniglot', root: '/x', split: 'random' })).toBe(false);
    expect(validate({ type: 'image-folder', root: '/x' })).toBe(false);
    expect(validate({ type: 'nope' })).toBe(false);
  });
});
