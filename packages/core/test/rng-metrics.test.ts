import { describe, expect, it } from 'vitest';
import { Rng, meanCI, accuracy, argmaxRows, median, oneHotRows, randomEpisode } from '../src/index.js';

describe('Rng', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = new Rng(42), b = new Rng(42), c = new Rng(43);
    const xa = Array.from({ length: 5 }, () => a.next());
    const xb = Array.from({ length: 5 }, () => b.next());
    const xc = Array.from({ length: 5 }, () => c.next());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
  });

  it('resumes exactly from a saved state', () => {
    const a = new Rng('s');
    for (let i = 0; i < 10; i++) a.next();
    const b = Rng.fromState(JSON.parse(JSON.stringify(a.state())));
    expect(Array.from({ length: 5 }, () => b.int(1000))).toEqual(Array.from({ length: 5 }, () => a.int(1000)));
  });

  it('samples distinct indices and normals with the right moments', () => {
    const r = new Rng(1);
    const s = r.sample(10, 10);
    expect([...s].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(() => r.sample(3, 4)).toThrow(/cannot draw 4 distinct items from 3/);
    const z = r.normalArray(20000);
    const m = meanCI(z);
    expect(Math.abs(m.mean)).toBeLessThan(0.03);
    expect(Math.abs(m.std - 1)).toBeLessThan(0.03);
  });
});

describe('metrics', () => {
  it('computes accuracy, argmax and the 95% CI of the mean', () => {
    expect(accuracy([0, 1, 2, 2], [0, 1, 1, 2])).toBe(0.75);
    expect(Array.from(argmaxRows([0.1, 0.9, 0.8, 0.2], 2, 2))).toEqual([1, 0]);
    expect(Array.from(oneHotRows([2, 0], 3))).toEqual([0, 0, 1, 1, 0, 0]);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
    expect(() => oneHotRows([0, 3], 3, 'maml: query label')).toThrow(/maml: query label 3 is outside 0..2/);
    expect(() => oneHotRows([-1], 3)).toThrow(/label -1 is outside/);
    const m = meanCI([1, 0, 1, 0]);
    expect(m.mean).toBe(0.5);
    // sample std of [1,0,1,0] = sqrt(1/3); ci = 1.96*std/2
    expect(m.ci95).toBeCloseTo((1.96 * Math.sqrt(1 / 3)) / 2, 10);
  });
});

describe('Rng normal stream', () => {
  it('resumes mid-pair of Box–Muller normals', () => {
    const a = new Rng(3);
    a.normal();
    const b = Rng.fromState(JSON.parse(JSON.stringify(a.state())));
    expect([b.normal(), b.normal(), b.normal()]).toEqual([a.normal(), a.normal(), a.normal()]);
  });
});

describe('randomEpisode (benchmarks)', () => {
  it('has the asked geometry, labels in class order, and is the same for the same seed', () => {
    const a = randomEpisode(new Rng(5), { ways: 3, shots: 2, queries: 4, shape: [4, 4, 1] });
    const b = randomEpisode(new Rng(5), { ways: 3, shots: 2, queries: 4, shape: [4, 4, 1] });
    expect(a.support.x.shape).toEqual([6, 4, 4, 1]);
    expect(a.query.x.shape).toEqual([12, 4, 4, 1]);
    expect(Array.from(a.support.y)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(Array.from(a.query.y)).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    expect(Array.from(a.query.x.dataSync())).toEqual(Array.from(b.query.x.dataSync()));
    a.dispose!();
    b.dispose!();
    expect(a.support.x.isDisposed && a.query.x.isDisposed).toBe(true);
  });
});
