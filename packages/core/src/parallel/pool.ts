import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { Episode, LearnerContext } from '../contracts.js';
import { engineInfo, type BackendName } from '../engine/index.js';
import { episodeToWire, transferablesOf, type StepContext, type TaskGradient, type TaskParallelLearner } from './types.js';
import { CTRL_FIELDS, type StepReply, type StepRequest, type WorkerInit } from './protocol.js';

export interface WorkerPoolOptions {
  /** worker threads (default: os.availableParallelism()) */
  size?: number;
  /** the learner every worker builds from the registry: the main thread's id, config and context (seed) */
  learner: { id: string; config: unknown; ctx: LearnerContext };
  /**
   * modules each worker imports before building the learner, so that their learners are registered
   * (e.g. `import.meta.resolve('@metalearn/optim')`, or a bare name resolvable from core's folder)
   */
  modules: string[];
  /** tfjs backend of the workers (default: the main thread's, from `engineInfo()`, else 'wasm') */
  backend?: BackendName;
  /** the worker script (default: {@link defaultWorkerScript}) */
  workerScript?: string | URL;
  /** give up on a step after this many ms (default 0: wait as long as it takes) */
  stepTimeoutMs?: number;
}

/**
 * The worker script. From built JS (`dist/parallel/pool.js`) it is the sibling `worker.js`. When this
 * module runs from its TypeScript source (vitest), it is `source-worker.mjs`, which installs small
 * module hooks (`source-hooks.mjs`: `@metalearn/*` → `src/index.ts` via tsconfig.base.json paths,
 * `.js` → `.ts`, TypeScript transpileModule) so the workers run the same sources as the test: no
 * build is needed and a stale dist cannot make threads disagree.
 */
export function defaultWorkerScript(): URL {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = new URL(fromSource ? './source-worker.mjs' : './worker.js', import.meta.url);
  if (!fs.existsSync(fileURLToPath(url))) throw new Error(`WorkerPool: worker script ${fileURLToPath(url)} not found`);
  return url;
}

/** Default worker count: the cores this process may use. */
export function defaultWorkerCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

interface Slot {
  worker: Worker;
  port: MessagePort;
  exited: boolean;
  error: Error | null;
}

/**
 * N worker threads that compute the per-task gradients of a meta-batch for a
 * {@link TaskParallelLearner}. `run` is synchronous (so `MetaLearner.metaTrainStep` stays synchronous
 * and the RxJS training stream keeps its back-pressure): it posts each worker its contiguous share of
 * the tasks plus the current parameters, then blocks on a shared control array (Atomics.wait) until
 * every worker has answered, and reads the answers with `receiveMessageOnPort`. Results are returned
 * in task order; an error in a worker is rethrown with the worker's message (after every other worker
 * has answered, so the pool stays usable). Once started, workers are `unref`'d: they never keep
 * the process alive, and `close()` terminates them.
 */
export class WorkerPool {
  private closed = false;

  private constructor(
    private readonly slots: Slot[],
    private readonly ctrl: Int32Array,
    readonly learnerId: string,
    private readonly stepTimeoutMs: number,
  ) {}

  /** Start the workers and wait until each has its engine and learner ready. */
  static async create(opts: WorkerPoolOptions): Promise<WorkerPool> {
    const size = opts.size ?? defaultWorkerCount();
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`WorkerPool: size must be an integer >= 1, got ${size}`);
    const script = opts.workerScript ?? defaultWorkerScript();
    const backend = opts.backend ?? engineInfo()?.backend ?? 'wasm';
    const ctrl = new Int32Array(new SharedArrayBuffer(size * CTRL_FIELDS * 4));
    const slots: Slot[] = [];
    const ready: Promise<void>[] = [];
    for (let w = 0; w < size; w++) {
      const ch = new MessageChannel();
      const init: WorkerInit = { slot: w, ctrl: ctrl.buffer as SharedArrayBuffer, port: ch.port2, modules: opts.modules, backend, learner: opts.learner };
      const worker = new Worker(script, { workerData: init, transferList: [ch.port2], stderr: false });
      const slot: Slot = { worker, port: ch.port1, exited: false, error: null };
      slots.push(slot);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.on('message', (m: { type: string; message?: string }) => {
            if (m.type === 'ready') resolve();
            else if (m.type === 'init-error') reject(new Error(`worker ${w} failed to start learner '${opts.learner.id}': ${m.message}`));
          });
          worker.on('error', (e) => {
            slot.error = e;
            reject(new Error(`worker ${w} failed: ${e.message}`));
          });
          worker.on('exit', (code) => {
            slot.exited = true;
            reject(new Error(`worker ${w} exited (code ${code}) before it was ready`));
          });
        }),
      );
      ch.port1.unref();
    }
    const pool = new WorkerPool(slots, ctrl, opts.learner.id, opts.stepTimeoutMs ?? 0);
    try {
      await Promise.all(ready);
      // from here on the workers never keep the process alive (steps block the main thread anyway);
      // while starting they must, or an otherwise idle process would exit under the await
      for (const s of slots) s.worker.unref();
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  /**
   * Per-task results of `batch` (task i = batch[i]) computed in the workers, in task order. Worker w
   * gets tasks [⌊w·n/N⌋, ⌊(w+1)·n/N⌋); workers with no share are not involved.
   */
  run(learner: TaskParallelLearner, batch: Episode[], ctx: StepContext): TaskGradient[] {
    if (this.closed) throw new Error('WorkerPool.run: the pool is closed');
    if (learner.id !== this.learnerId) throw new Error(`WorkerPool.run: the pool's workers run learner '${this.learnerId}', not '${learner.id}'`);
    for (const [w, s] of this.slots.entries()) if (s.exited || s.error) throw new Error(`WorkerPool: worker ${w} is gone${s.error ? `: ${s.error.message}` : ''}`);
    const n = batch.length;
    const N = this.slots.length;
    const params = learner.getParams();
    const posted: { w: number; first: number; count: number; before: number }[] = [];
    for (let w = 0; w < N; w++) {
      const first = Math.floor((w * n) / N);
      const end = Math.floor(((w + 1) * n) / N);
      if (end <= first) continue;
      const episodes = batch.slice(first, end).map(episodeToWire);
      const req: StepRequest = { params, episodes, first, ctx };
      const before = Atomics.load(this.ctrl, w * CTRL_FIELDS);
      this.slots[w]!.port.postMessage(req, transferablesOf(episodes));
      posted.push({ w, first, count: end - first, before });
    }
    const out: TaskGradient[] = [];
    const errors: string[] = [];
    for (const p of posted) {
      const reply = this.await(p.w, p.before);
      if (!reply) {
        errors.push(`worker ${p.w} (tasks ${p.first}..${p.first + p.count - 1}) exited during the step`);
        continue;
      }
      if (!reply.ok) {
        errors.push(`worker ${p.w} (tasks ${p.first}..${p.first + p.count - 1}): ${reply.message}`);
        continue;
      }
      const covered = reply.tasks.reduce((s, t) => s + (t.count ?? 1), 0);
      if (covered !== p.count) errors.push(`worker ${p.w} returned results for ${covered} tasks, it was given ${p.count}`);
      out.push(...reply.tasks);
    }
    if (errors.length) throw new Error(`${this.learnerId}: task-parallel step failed: ${errors.join('; ')}`);
    return out.sort((a, b) => a.index - b.index);
  }

  /** Block until worker w has answered (its counter moved past `before`); null when it exited. */
  private await(w: number, before: number): StepReply | null {
    const i = w * CTRL_FIELDS;
    const t0 = Date.now();
    while (Atomics.load(this.ctrl, i) === before) {
      Atomics.wait(this.ctrl, i, before, 1000);
      if (this.stepTimeoutMs > 0 && Date.now() - t0 > this.stepTimeoutMs && Atomics.load(this.ctrl, i) === before) {
        this.slots[w]!.exited = true; // unusable: its answer would arrive out of step
        throw new Error(`${this.learnerId}: worker ${w} did not answer within ${this.stepTimeoutMs} ms`);
      }
    }
    // the worker posts before it bumps the counter; the message is normally there at once
    for (let tries = 0; tries < 1000; tries++) {
      const m = receiveMessageOnPort(this.slots[w]!.port);
      if (m) return m.message as StepReply;
      if (Atomics.load(this.ctrl, i + 1) === 1) break;
      Atomics.wait(this.ctrl, i, Atomics.load(this.ctrl, i), 1);
    }
    this.slots[w]!.exited = true;
    return null;
  }

  /** Terminate every worker (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.slots.map(async (s) => {
        s.port.close();
        if (!s.exited) await s.worker.terminate();
        s.exited = true;
      }),
    );
  }
}
