/**
 * `metalearn bench`'s learner rows: torch_ref.py's FOMAML and second-order MAML meta-batches (4 tasks,
 * 5-way 1-shot 15 queries, Conv-4/64, α 0.4, Adam outer step) run by the optim learners themselves,
 * as `metalearn run` trains them — `engine: onnxruntime` (each task one graph) and the tasks of the
 * meta-batch on `train.workers` worker threads (default: the cores, at most the 4 tasks). One
 * iteration is one `metaTrainStep`: splitting the batch, the workers' graphs, summing in task order,
 * Adam. Core's `graph_*` rows time the same graphs in one thread; these are what a run pays.
 */
import {
  Rng,
  randomEpisode,
  WorkerPool,
  defaultWorkerCount,
  getLearner,
  isTaskParallel,
  taskParallelStep,
  type BenchExtraWorkload,
  type TaskParallelLearner,
} from '@metalearn/core';
import '@metalearn/optim';

const SHAPE = [28, 28, 1];
const WAYS = 5;
const SHOTS = 1;
const QUERIES = 15;
const META_BATCH = 4;

/** Row names, each with the learner, its inner steps and torch_ref.py's counterpart. */
export const LEARNER_BENCH = [
  { workload: 'workers_fomaml_5w1s_metabatch4_1step', id: 'fomaml', innerSteps: 1, torch: 'fomaml_5w1s_metabatch4_1step' },
  { workload: 'workers_maml2_5w1s_metabatch4_1step', id: 'maml', innerSteps: 1, torch: 'maml2_5w1s_metabatch4_1step' },
  { workload: 'workers_maml2_5w1s_metabatch4_5step', id: 'maml', innerSteps: 5, torch: 'maml2_5w1s_metabatch4_5step' },
] as const;

export const LEARNER_BENCH_WORKLOADS: readonly string[] = LEARNER_BENCH.map((b) => b.workload);

/** Workers of the learner rows: `asked`, else the cores; never more than the meta-batch's tasks. */
export function learnerBenchWorkers(asked?: number): number {
  return Math.min(asked ?? defaultWorkerCount(), META_BATCH);
}

/** The learner rows as core bench workloads, on `workers` threads (1: this thread, graphs on all cores). */
export function learnerBenchWorkloads(workers: number, seed = 0): BenchExtraWorkload[] {
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`bench: workers must be a positive integer, got ${workers}`);
  return LEARNER_BENCH.map((b) => ({
    workload: b.workload,
    backend: workers > 1 ? `onnxruntime-graph, ${workers} workers` : 'onnxruntime-graph, this thread',
    torch: b.torch,
    async setup() {
      const config = {
        backbone: { type: 'conv4', filters: 64 },
        ways: WAYS,
        innerSteps: b.innerSteps,
        innerLr: 0.4,
        metaLr: 0.001,
        engine: 'onnxruntime',
        ...(b.id === 'maml' ? { firstOrder: false } : {}),
      };
      const ctx = { inputShape: SHAPE, seed: seed + 1 };
      const learner = getLearner(b.id).create(config, ctx);
      if (!isTaskParallel(learner)) throw new Error(`bench: learner '${b.id}' has no task-parallel step`);
      const rng = new Rng(seed).fork(b.workload);
      const batch = Array.from({ length: META_BATCH }, () => randomEpisode(rng, { ways: WAYS, shots: SHOTS, queries: QUERIES, shape: SHAPE }));
      let pool: WorkerPool | null = null;
      try {
        if (workers > 1) pool = await WorkerPool.create({ size: workers, modules: [import.meta.resolve('@metalearn/optim')], learner: { id: b.id, config, ctx } });
      } catch (err) {
        learner.dispose();
        batch.forEach((e) => e.dispose!());
        throw err;
      }
      const l: TaskParallelLearner = learner;
      return {
        step: () => void taskParallelStep(l, batch, pool),
        close: async () => {
          await pool?.close();
          l.dispose();
          batch.forEach((e) => e.dispose!());
        },
      };
    },
  }));
}
