import type { Episode, MetaLearner, StepResult } from '../contracts.js';
import type { WorkerPool } from './pool.js';
import type { TaskParallelLearner } from './types.js';

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
