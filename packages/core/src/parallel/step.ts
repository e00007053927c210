import type { Episode, MetaLearner, StepResult } from '../contracts.js';
import type { WorkerPool } from './pool.js';
import type { FlatParams, TaskParallelLearner } from './types.js';

/**
 * The one meta-training step of a {@link TaskParallelLearner}: draw the step context, compute the
 * per-task results (in this thread, or in the pool's workers), combine them and update. Learners call
 * this from `metaTrainStep` with no pool, so single-thread and multi-thread training share every line
 * of maths.
 */
export function taskParallelStep(learner: TaskParallelLearner, batch: Episode[], pool?: WorkerPool | null): StepResult {
  const ctx = learner.beginStep(batch);
  const tasks = pool ? pool.run(learner, batch, ctx) : learner.taskGradients(batch, 0, ctx);
  return learner.applyGradients(tasks, ctx);
}

/**
 * `learner` with `metaTrainStep` running its tasks in `pool`; every other member is the learner's own
 * (the learner object is shared: state, checkpoints and adaptation are unaffected).
 */
export function withWorkerPool(learner: TaskParallelLearner, pool: WorkerPool): MetaLearner {
  return {
    get id() {
      return learner.id;
    },
    get family() {
      return learner.family;
    },
    get config() {
      return learner.config;
    },
    metaTrainStep: (batch) => taskParallelStep(learner, batch, pool),
    adapt: (support, ways) => learner.adapt(support, ways),
    state: () => learner.state(),
    load: (c) => learner.load(c),
    dispose: () => learner.dispose(),
  };
}

/**
 * max over all entries of |a − b| / (|a| + 1e-3): how far two parameter sets (e.g. an in-process and
 * a pooled run) drifted apart. Throws when the two sets name different tensors or sizes.
 */
export function maxRelParamDiff(a: FlatParams, b: FlatParams): number {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) throw new Error(`maxRelParamDiff: parameter names differ: [${ka}] vs [${kb}]`);
  let m = 0;
  for (const k of ka) {
    const x = a[k]!.data;
    const y = b[k]!.data;
    if (x.length !== y.length) throw new Error(`maxRelParamDiff: '${k}' has ${x.length} vs ${y.length} values`);
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!) / (Math.abs(x[i]!) + 1e-3));
  }
  return m;
}
