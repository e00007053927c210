/**
 * The worker-thread side of {@link WorkerPool}: starts its own tfjs engine, imports the plugin modules,
 * builds the learner from the registry with the main thread's id/config/seed, then answers step
 * requests on its private port: set the parameters, compute the per-task gradients of its share of
 * the meta-batch, post them back (typed arrays moved, not copied) and wake the main thread through the
 * shared control array.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { initEngine } from '../engine/index.js';
import { getLearner } from '../registry.js';
import { episodeFromWire, isTaskParallel, transferablesOf, type TaskParallelLearner } from './types.js';
import { CTRL_FIELDS, type StepReply, type StepRequest, type WorkerInit } from './protocol.js';

async function main(): Promise<void> {
  if (isMainThread || !parentPort) throw new Error('parallel/worker.js must run in a worker thread (use WorkerPool)');
  const init = workerData as WorkerInit;
  const ctrl = new Int32Array(init.ctrl);
  const counter = init.slot * CTRL_FIELDS;
  const wake = (): void => void Atomics.notify(ctrl, counter);
  process.on('exit', () => {
    Atomics.store(ctrl, counter + 1, 1);
    Atomics.add(ctrl, counter, 1);
    wake();
  });
  let learner: TaskParallelLearner;
  try {
    await initEngine({ backend: init.backend, quiet: true });
    for (const m of init.modules) await import(m);
    const l = getLearner(init.learner.id).create(init.learner.config, init.learner.ctx);
    if (!isTaskParallel(l)) throw new Error(`learner '${init.learner.id}' does not implement TaskParallelLearner (taskGradients/applyGradients/getParams/setParams)`);
    learner = l;
  } catch (e) {
    parentPort.postMessage({ type: 'init-error', message: (e as Error).message ?? String(e), stack: (e as Error).stack });
    return;
  }
  const port = init.port;
  port.on('message', (req: StepRequest) => {
    try {
      learner.setParams(req.params);
      const eps = req.episodes.map(episodeFromWire);
      let reply: StepReply;
      try {
        reply = { ok: true, tasks: learner.taskGradients(eps, req.first, req.ctx) };
      } finally {
        for (const e of eps) e.dispose?.();
      }
      port.postMessage(reply, transferablesOf(reply.tasks));
    } catch (e) {
      const reply: StepReply = { ok: false, message: (e as Error).message ?? String(e), stack: (e as Error).stack };
      port.postMessage(reply);
    }
    Atomics.add(ctrl, counter, 1);
    wake();
  });
  parentPort.postMessage({ type: 'ready' });
}

void main().catch((e: unknown) => {
  parentPort?.postMessage({ type: 'init-error', message: (e as Error).message ?? String(e), stack: (e as Error).stack });
});
