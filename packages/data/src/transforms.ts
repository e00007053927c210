import type { Episode, EpisodeDescription } from '@metalearn/core';
import { Observable } from 'rxjs';
import type { ClassDataset } from './dataset.js';
import { DataError } from './errors.js';
import { EpisodeSampler, materialize, type ClassPool, type EpisodeSpec, type VariableSpec } from './episodes.js';

/** The state task transforms edit, in the spirit of learn2learn's TaskDataset transforms. */
export interface TaskSpecDraft {
  ways?: number;
  shots?: number;
  queries?: number;
  variable?: VariableSpec;
  pool?: ClassPool;
  /** false: labels follow ascending class id; true (default): random label assignment */
  shuffleLabels?: boolean;
}

export type TaskTransform = (draft: TaskSpecDraft) => TaskSpecDraft;

/** N classes per task. */
export const NWays = (n: number): TaskTransform => (d) => ({ ...d, ways: n });
/** k support items per class. */
export const KShots = (k: number): TaskTransform => (d) => ({ ...d, shots: k });
/** q query items per class. */
export const QueryCount = (q: number): TaskTransform => (d) => ({ ...d, queries: q });
/** Draw classes only from a split name or an explicit class list (learn2learn FilterLabels). */
export const FilterLabels = (pool: ClassPool): TaskTransform => (d) => ({ ...d, pool });
/** Labels are always remapped to 0..N-1; `shuffle` picks random (default) or ascending-class order. */
export const RemapLabels = (shuffle = true): TaskTransform => (d) => ({ ...d, shuffleLabels: shuffle });
/** Variable ways/shots (Meta-Dataset sampler). */
export const VariableWaysShots = (v: VariableSpec = {}): TaskTransform => (d) => ({ ...d, variable: v });

/** Apply transforms in order and check that ways, shots and queries were all set. */
export function buildSpec(transforms: TaskTransform[]): { spec: EpisodeSpec; pool: ClassPool; shuffleLabels: boolean } {
  const d = transforms.reduce<TaskSpecDraft>((acc, t) => t(acc), {});
  const missing = (['ways', 'shots', 'queries'] as const).filter((k) => d[k] === undefined);
  if (missing.length) {
    throw new DataError(`task transforms: ${missing.join(', ')} not set (expected NWays, KShots and QueryCount transforms)`);
  }
  const spec: EpisodeSpec = { ways: d.ways!, shots: d.shots!, queries: d.queries! };
  if (d.variable) spec.variable = d.variable;
  return { spec, pool: d.pool, shuffleLabels: d.shuffleLabels ?? true };
}

/** Reorder a description so that label l belongs to the l-th smallest class id. */
export function sortLabels(desc: EpisodeDescription): EpisodeDescription {
  const order = desc.classes.map((c, i) => [c, i] as const).sort((a, b) => a[0] - b[0]);
  return {
    classes: order.map(([c]) => c),
    support: order.map(([, i]) => desc.support[i]!),
    query: order.map(([, i]) => desc.query[i]!),
  };
}

/**
 * learn2learn-like task dataset: `new TaskDataset(ds, [NWays(5), KShots(1), QueryCount(15)], {seed})`.
 * Task i is deterministic; with `numTasks` the task set is finite and index i maps to i mod numTasks.
 */
export class TaskDataset {
  readonly spec: EpisodeSpec;
  readonly pool: ClassPool;
  private readonly sampler: EpisodeSampler;
  private readonly shuffleLabels: boolean;

  constructor(
    readonly dataset: ClassDataset,
    transforms: TaskTransform[],
    private readonly opts: { seed?: number | string; numTasks?: number } = {},
  ) {
    const b = buildSpec(transforms);
    this.spec = b.spec;
    this.pool = b.pool;
    this.shuffleLabels = b.shuffleLabels;
    this.sampler = new EpisodeSampler(dataset, b.pool, b.spec, opts.seed ?? 0);
  }

  describe(index: number): EpisodeDescription {
    const i = this.opts.numTasks ? index % this.opts.numTasks : index;
    const d = this.sampler.describe(i);
    return this.shuffleLabels ? d : sortLabels(d);
  }

  sample(index: number): Episode {
    return materialize(this.dataset, this.describe(index));
  }

  /** Cold Observable of tasks start, start+1, ... (synchronous; stops on unsubscribe). */
  episodes$(opts: { start?: number; count?: number } = {}): Observable<Episode> {
    return new Observable<Episode>((sub) => {
      const start = opts.start ?? 0;
      const end = opts.count === undefined ? Infinity : start + opts.count;
      for (let i = start; i < end && !sub.closed; i++) sub.next(this.sample(i));
      if (!sub.closed) sub.complete();
    });
  }
}
