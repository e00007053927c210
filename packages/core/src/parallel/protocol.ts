/** Messages between {@link WorkerPool} and its worker threads. */
import type { MessagePort } from 'node:worker_threads';
import type { LearnerContext } from '../contracts.js';
import type { BackendName } from '../engine/index.js';
import type { FlatParams, StepContext, TaskGradient, WireEpisode } from './types.js';

export interface WorkerInit {
  slot: number;
  ctrl: SharedArrayBuffer;
  port: MessagePort;
  modules: string[];
  backend: BackendName;
  learner: { id: string; config: unknown; ctx: LearnerContext };
}

export interface StepRequest {
  params: FlatParams;
  episodes: WireEpisode[];
  first: number;
  ctx: StepContext;
}

export type StepReply = { ok: true; tasks: TaskGradient[] } | { ok: false; message: string; stack?: string };

/** ctrl layout per worker slot: [reply counter, exited flag] */
export const CTRL_FIELDS = 2;

