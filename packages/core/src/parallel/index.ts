export * from './types.js';
export { WorkerPool, defaultWorkerCount, defaultWorkerScript, type WorkerPoolOptions } from './pool.js';
export { maxRelParamDiff, taskParallelStep, withWorkerPool } from './step.js';
