import * as tf from '@tensorflow/tfjs-core';
import { Observable, type SchedulerLike } from 'rxjs';
import { Rng, type Episode, type EpisodeDescription } from '@metalearn/core';
import { DataError } from './errors.js';
import { resolveClasses, type ClassDataset } from './dataset.js';

/** Meta-Dataset style variable ways/shots (Triantafillou et al. 2020). */
export interface VariableSpec {
  /** fewest ways (default min(5, ways)); ways is drawn uniformly from [minWays, maxWays] */
  minWays?: number;
  /** most ways (default spec.ways), capped by the number of classes in the pool */
  maxWays?: number;
  /** most support items of one class (default 100) */
  maxShots?: number;
  /** most support items in the whole episode (default 500) */
  maxSupportSize?: number;
}

/**
 * What an episode looks like. Fixed: exactly `ways` classes, `shots` support and `queries` query
 * items per class. With `variable`, ways and per-class shots vary (Meta-Dataset sampler); queries
 * per class is then min(queries, floor(half the smallest chosen class)).
 */
export interface EpisodeSpec {
  ways: number;
  shots: number;
  queries: number;
  variable?: VariableSpec;
  /**
   * Draw all classes of an episode from one group: the classes sharing the value of this
   * `classInfo` field (e.g. 'alphabet' for Omniglot: Koch et al.'s within-alphabet one-shot task).
   * Every group of the pool must have at least `ways` classes (variable: `minWays`). With
   * EpisodeSampler, episodes cycle through the groups: each run of G consecutive episodes (G =
   * number of groups) visits every group once, in a seeded order; sampleEpisode picks one at random.
   */
  withinGroup?: string;
}

/** Which classes an episode may draw from: a split name, an explicit list, or undefined (all). */
export type ClassPool = string | readonly number[] | undefined;

function checkSpec(spec: EpisodeSpec): void {
  const bad = (f: string, v: unknown, want: string) =>
    new DataError(`episode spec: ${f} = ${JSON.stringify(v)}, expected ${want}`);
  if (!Number.isInteger(spec.ways) || spec.ways < 1) throw bad('ways', spec.ways, 'an integer >= 1');
  if (!Number.isInteger(spec.shots) || spec.shots < 1) throw bad('shots', spec.shots, 'an integer >= 1');
  if (!Number.isInteger(spec.queries) || spec.queries < 0) throw bad('queries', spec.queries, 'an integer >= 0');
  if (spec.withinGroup !== undefined && (typeof spec.withinGroup !== 'string' || spec.withinGroup === '')) {
    throw bad('withinGroup', spec.withinGroup, "the name of a class metadata field, e.g. 'alphabet'");
  }
  const v = spec.variable;
  if (v) {
    for (const k of ['minWays', 'maxWays', 'maxShots', 'maxSupportSize'] as const) {
      const x = v[k];
      if (x !== undefined && (!Number.isInteger(x) || x < 1)) throw bad(`variable.${k}`, x, 'an integer >= 1');
    }
  }
}

function poolName(pool: ClassPool): string {
  return typeof pool === 'string' ? `split '${pool}'` : pool === undefined ? 'the dataset' : 'the class list';
}

/** The classes of a pool grouped by a metadata field: group value -> class ids (groups in name order). */
export interface ClassGroups {
  key: string;
  names: string[];
  classes: (readonly number[])[];
}

/**
 * Group `classes` by the `classInfo(c)[key]` metadata field. Throws a DataError when a class lacks
 * the field (naming the class and the fields it has).
 */
export function groupClasses(ds: ClassDataset, classes: readonly number[], key: string): ClassGroups {
  const by = new Map<string, number[]>();
  for (const c of classes) {
    const info = ds.classInfo(c);
    const v = info[key];
    if (v === undefined || v === null || (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')) {
      const have = Object.keys(info).filter((k) => k !== 'name');
      throw new DataError(
        `${ds.name}: withinGroup '${key}': class ${c} ('${info.name}') has no '${key}' field` +
          (have.length ? ` (its metadata fields: ${have.join(', ')})` : ' (it has no metadata fields besides its name)'),
      );
    }
    const g = String(v);
    let l = by.get(g);
    if (!l) by.set(g, (l = []));
    l.push(c);
  }
  const names = [...by.keys()].sort();
  return { key, names, classes: names.map((n) => by.get(n)!) };
}

/**
 * Check once that every episode of `spec` can be drawn from `pool`; throws a DataError naming
 * the offending class (too few items) or the shortfall of classes.
 */
export function validateEpisodeSpec(ds: ClassDataset, pool: ClassPool, spec: EpisodeSpec): readonly number[] {
  checkSpec(spec);
  const classes = resolveClasses(ds, pool);
  if (spec.withinGroup !== undefined) {
    const groups = groupClasses(ds, classes, spec.withinGroup);
    const need = spec.variable ? (spec.variable.minWays ?? Math.min(5, spec.ways)) : spec.ways;
    const small = groups.names.map((n, i) => [n, groups.classes[i]!.length] as const).filter(([, k]) => k < need);
    if (groups.names.length === 0) throw new DataError(`${ds.name}: ${poolName(pool)} has no classes`);
    if (small.length) {
      const list = small.map(([n, k]) => `'${n}' (${k})`).join(', ');
      throw new DataError(
        `${ds.name}: withinGroup '${spec.withinGroup}': ${small.length} of the ${groups.names.length} groups of ${poolName(pool)} have fewer than ` +
          `${spec.variable ? 'minWays' : 'ways'} = ${need} classes: ${list}; lower the ways or restrict the pool to larger groups`,
      );
    }
  }
  if (spec.variable) {
    const minWays = spec.variable.minWays ?? Math.min(5, spec.ways);
    if (classes.length < minWays) {
      throw new DataError(
        `${ds.name}: variable episodes need at least minWays = ${minWays} classes but ${poolName(pool)} has only ${classes.length}`,
      );
    }
    for (const c of classes) {
      if (ds.itemCount(c) < 2) {
        throw new DataError(
          `${ds.name}: class ${c} ('${ds.classInfo(c).name}') has ${ds.itemCount(c)} item(s); variable episodes need at least 2 (1 support + 1 query)`,
        );
      }
    }
    return classes;
  }
  if (spec.ways > classes.length) {
    throw new DataError(`${ds.name}: ways = ${spec.ways} is larger than the ${classes.length} classes of ${poolName(pool)}`);
  }
  const need = spec.shots + spec.queries;
  for (const c of classes) {
    const n = ds.itemCount(c);
    if (n < need) {
      throw new DataError(
        `${ds.name}: class ${c} ('${ds.classInfo(c).name}') in ${poolName(pool)} has ${n} items, fewer than shots + queries = ${spec.shots} + ${spec.queries} = ${need}`,
      );
    }
  }
  return classes;
}

/**
 * k distinct indices from [0, n) in draw order. For k much smaller than n it draws with
 * rejection (O(k)) instead of Rng.sample's O(n) index array; same seed, same result everywhere.
 */
export function sampleDistinct(rng: Rng, n: number, k: number): number[] {
  if (k > n) throw new RangeError(`sampleDistinct: cannot draw ${k} distinct items from ${n}`);
  if (k * 4 > n) return rng.sample(n, k);
  const seen = new Set<number>();
  const out: number[] = [];
  while (out.length < k) {
    const i = rng.int(n);
    if (!seen.has(i)) {
      seen.add(i);
      out.push(i);
    }
  }
  return out;
}

/** Draw one episode description from already validated pool classes (one group's, with withinGroup). */
function drawEpisode(ds: ClassDataset, classes: readonly number[], spec: EpisodeSpec, rng: Rng): EpisodeDescription {
  if (!spec.variable) {
    const picked = sampleDistinct(rng, classes.length, spec.ways).map((i) => classes[i]!);
    const support: number[][] = [];
    const query: number[][] = [];
    const need = spec.shots + spec.queries;
    for (const c of picked) {
      const items = rng.sample(ds.itemCount(c), need);
      support.push(items.slice(0, spec.shots));
      query.push(items.slice(spec.shots));
    }
    return { classes: picked, support, query };
  }
  const v = spec.variable;
  const maxWays = Math.min(v.maxWays ?? spec.ways, classes.length);
  const minWays = Math.min(v.minWays ?? Math.min(5, spec.ways), maxWays);
  const ways = minWays + rng.int(maxWays - minWays + 1);
  const picked = sampleDistinct(rng, classes.length, ways).map((i) => classes[i]!);
  const counts = picked.map((c) => ds.itemCount(c));
  const minCount = Math.min(...counts);
  const q = Math.max(1, Math.min(spec.queries, Math.floor(minCount / 2)));
  const maxShots = v.maxShots ?? 100;
  const beta = rng.next();
  let total = 0;
  for (const n of counts) total += Math.ceil(beta * Math.min(maxShots, n - q));
  const supportSize = Math.max(ways, Math.min(v.maxSupportSize ?? 500, total));
  const alphas = picked.map(() => Math.exp(rng.uniform(Math.log(0.5), Math.log(2))));
  const sumA = alphas.reduce((a, b) => a + b, 0);
  const support: number[][] = [];
  const query: number[][] = [];
  picked.forEach((c, i) => {
    const n = counts[i]!;
    const k = Math.max(1, Math.min(Math.floor((alphas[i]! / sumA) * (supportSize - ways)) + 1, n - q, maxShots));
    const items = rng.sample(n, k + q);
    support.push(items.slice(0, k));
    query.push(items.slice(k));
  });
  return { classes: picked, support, query };
}

/** Sample one episode description (class ids + item indices) with `rng`. */
export function sampleEpisode(ds: ClassDataset, pool: ClassPool, spec: EpisodeSpec, rng: Rng): EpisodeDescription {
  const classes = validateEpisodeSpec(ds, pool, spec);
  if (spec.withinGroup !== undefined) {
    const g = groupClasses(ds, classes, spec.withinGroup);
    return drawEpisode(ds, g.classes[rng.int(g.names.length)]!, spec, rng);
  }
  return drawEpisode(ds, classes, spec, rng);
}

/** The generator of episode `index` for a seed: independent of every other index. */
export function episodeRng(seed: number | string, index: number): Rng {
  return new Rng(`episode/${seed}/${index}`);
}

/**
 * A reusable sampler: validates once, then `describe(i)` gives episode i of the seed's sequence.
 * Episode i depends only on (dataset layout, pool, spec, seed, i) — the same on any machine.
 */
export class EpisodeSampler {
  readonly classes: readonly number[];
  /** the pool's classes grouped by `spec.withinGroup` (null without it) */
  readonly groups: ClassGroups | null;
  constructor(
    readonly dataset: ClassDataset,
    readonly pool: ClassPool,
    readonly spec: EpisodeSpec,
    readonly seed: number | string,
  ) {
    this.classes = validateEpisodeSpec(dataset, pool, spec);
    this.groups = spec.withinGroup !== undefined ? groupClasses(dataset, this.classes, spec.withinGroup) : null;
  }

  /**
   * The group index of episode `index` (withinGroup only): episodes cycle through the G groups,
   * each cycle k = floor(index / G) in its own seeded order, so any G consecutive episodes starting
   * at a multiple of G cover every group exactly once.
   */
  groupOf(index: number): number {
    const G = this.groups ? this.groups.names.length : 0;
    if (!G) throw new Error('EpisodeSampler.groupOf: the spec has no withinGroup');
    const cycle = Math.floor(index / G);
    const order = new Rng(`episode-groups/${this.seed}/${cycle}`).sample(G, G);
    return order[index - cycle * G]!;
  }

  describe(index: number): EpisodeDescription {
    const pool = this.groups ? this.groups.classes[this.groupOf(index)]! : this.classes;
    return drawEpisode(this.dataset, pool, this.spec, episodeRng(this.seed, index));
  }

  episode(index: number): Episode {
    return materialize(this.dataset, this.describe(index));
  }
}

/** Check a description against a dataset (class ids and item indices in range, no duplicates). */
export function checkDescription(ds: ClassDataset, d: EpisodeDescription, where = 'episode'): void {
  const fail = (m: string) => new DataError(`${where}: ${m}`);
  if (!Array.isArray(d.classes) || !Array.isArray(d.support) || !Array.isArray(d.query)) {
    throw fail('expected {classes: number[], support: number[][], query: number[][]}');
  }
  if (d.support.length !== d.classes.length || d.query.length !== d.classes.length) {
    throw fail(`support/query have ${d.support.length}/${d.query.length} class lists, expected ${d.classes.length} (one per class)`);
  }
  const seen = new Set<number>();
  d.classes.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 0 || c >= ds.numClasses) {
      throw fail(`classes[${i}] = ${c} is not a class of ${ds.name} (expected 0..${ds.numClasses - 1})`);
    }
    if (seen.has(c)) throw fail(`classes[${i}] = ${c} appears twice`);
    seen.add(c);
    const n = ds.itemCount(c);
    for (const [part, lists] of [['support', d.support], ['query', d.query]] as const) {
      const l = lists[i];
      if (!Array.isArray(l)) throw fail(`${part}[${i}] is not a list of item indices`);
      l.forEach((it, j) => {
        if (!Number.isInteger(it) || it < 0 || it >= n) {
          throw fail(`${part}[${i}][${j}] = ${it} is not an item of class ${c} ('${ds.classInfo(c).name}', ${n} items)`);
        }
      });
    }
  });
}

function gather(ds: ClassDataset, lists: number[][], classes: number[]): { x: Float32Array; y: Int32Array } {
  let n = 0;
  for (const l of lists) n += l.length;
  const fs = ds.featureSize;
  const x = new Float32Array(n * fs);
  const y = new Int32Array(n);
  let k = 0;
  lists.forEach((items, label) => {
    const c = classes[label]!;
    for (const it of items) {
      ds.readItem(c, it, x, k * fs);
      y[k] = label;
      k++;
    }
  });
  return { x, y };
}

/**
 * Build the tensors of an episode: support/query x are [n, ...featureShape] float32 (NHWC for
 * images, [n, length, channels] for series), in class-major order, labels remapped to 0..ways-1
 * in the order of `desc.classes`. The caller owns the tensors (`episode.dispose()`).
 */
export function materialize(ds: ClassDataset, desc: EpisodeDescription): Episode {
  const s = gather(ds, desc.support, desc.classes);
  const q = gather(ds, desc.query, desc.classes);
  const shape = [...ds.featureShape];
  const sx = tf.tensor(s.x, [s.y.length, ...shape], 'float32');
  const qx = tf.tensor(q.x, [q.y.length, ...shape], 'float32');
  const shots = desc.support.length ? Math.min(...desc.support.map((l) => l.length)) : 0;
  return {
    ways: desc.classes.length,
    shots,
    support: { x: sx, y: s.y },
    query: { x: qx, y: q.y },
    description: desc,
    dispose() {
      sx.dispose();
      qx.dispose();
    },
  };
}

export interface EpisodeStreamOptions {
  /** split name or class list to draw from (default: all classes) */
  split?: ClassPool;
  /** stop (complete) after this many episodes; default: never (unsubscribe or take(n)) */
  count?: number;
  /** index of the first episode (to resume a stream) */
  start?: number;
  /** emit each episode via this scheduler instead of synchronously */
  scheduler?: SchedulerLike;
}

/**
 * Cold, deterministic Observable of materialised episodes: each subscription draws episodes
 * start, start+1, ... of the seed. Emission is synchronous by default (a synchronous consumer
 * such as `map(batch => learner.metaTrainStep(batch))` gives natural back-pressure); it stops
 * as soon as the subscriber unsubscribes (e.g. `take(n)`). The subscriber owns each episode's
 * tensors and must `dispose()` them.
 */
export function episodes$(ds: ClassDataset, spec: EpisodeSpec, seed: number | string, opts: EpisodeStreamOptions = {}): Observable<Episode> {
  return new Observable<Episode>((sub) => {
    const sampler = new EpisodeSampler(ds, opts.split, spec, seed);
    const start = opts.start ?? 0;
    const end = opts.count === undefined ? Infinity : start + opts.count;
    if (!opts.scheduler) {
      for (let i = start; i < end && !sub.closed; i++) sub.next(sampler.episode(i));
      if (!sub.closed) sub.complete();
      return;
    }
    const step = (i: number): void => {
      if (sub.closed) return;
      if (i >= end) {
        sub.complete();
        return;
      }
      sub.next(sampler.episode(i));
      sub.add(opts.scheduler!.schedule(() => step(i + 1)));
    };
    sub.add(opts.scheduler.schedule(() => step(start)));
  });
}

/** Pull-based alternative to episodes$: a (possibly infinite) generator of descriptions. */
export function* episodeDescriptions(
  ds: ClassDataset,
  spec: EpisodeSpec,
  seed: number | string,
  opts: { split?: ClassPool; count?: number; start?: number } = {},
): Generator<EpisodeDescription> {
  const sampler = new EpisodeSampler(ds, opts.split, spec, seed);
  const start = opts.start ?? 0;
  const end = opts.count === undefined ? Infinity : start + opts.count;
  for (let i = start; i < end; i++) yield sampler.describe(i);
}

/** An episode as a time-ordered sequence for model-based (MANN / SNAIL style) learners. */
export interface EpisodeSequence {
  ways: number;
  /** inputs [T, ...featureShape] */
  x: tf.Tensor;
  /** one-hot of the previous step's label [T, ways]; zeros at t = 0 and after hidden labels */
  yPrev: tf.Tensor;
  /** target label of each step */
  y: Int32Array;
  /** 1 where step t is a query item */
  isQuery: Uint8Array;
  dispose(): void;
}

/**
 * Turn an episode into a sequence (x_t, y_{t-1}) as in Santoro et al. 2016: the support items in
 * a shuffled order, then (unless `queries: 'none'`) the shuffled query items. A query item's label
 * is fed back at t+1 only with `revealQueryLabels` (default false: zeros instead).
 */
export function toSequence(
  episode: Episode,
  rng: Rng,
  opts: { queries?: 'after' | 'none' | 'interleaved'; revealQueryLabels?: boolean } = {},
): EpisodeSequence {
  const mode = opts.queries ?? 'after';
  const nS = episode.support.y.length;
  const nQ = mode === 'none' ? 0 : episode.query.y.length;
  type Step = { q: boolean; i: number };
  const sIdx = rng.shuffle(Array.from({ length: nS }, (_, i) => ({ q: false, i })));
  const qIdx = rng.shuffle(Array.from({ length: nQ }, (_, i) => ({ q: true, i })));
  const order: Step[] = mode === 'interleaved' ? rng.shuffle([...sIdx, ...qIdx]) : [...sIdx, ...qIdx];
  const T = order.length;
  const ways = episode.ways;
  const y = new Int32Array(T);
  const isQuery = new Uint8Array(T);
  const prev = new Float32Array(T * ways);
  order.forEach((s, t) => {
    y[t] = s.q ? episode.query.y[s.i]! : episode.support.y[s.i]!;
    isQuery[t] = s.q ? 1 : 0;
    if (t > 0 && (!isQuery[t - 1] || opts.revealQueryLabels)) prev[t * ways + y[t - 1]!] = 1;
  });
  const rows = order.map((st) => (st.q ? nS + st.i : st.i));
  const x = tf.tidy(() => {
    const all = nQ > 0 ? tf.concat([episode.support.x, episode.query.x], 0) : episode.support.x;
    return tf.gather(all, tf.tensor1d(rows, 'int32'));
  });
  const yPrev = tf.tensor2d(prev, [T, ways], 'float32');
  return {
    ways,
    x,
    yPrev,
    y,
    isQuery,
    dispose() {
      x.dispose();
      yPrev.dispose();
    },
  };
}
