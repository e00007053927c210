/**
 * Backend selection. `tensorflow` (native, via the optional peer `@tensorflow/tfjs-node`) when it can
 * be loaded, else `wasm`; `cpu` only for tiny tests (pure JS: orders of magnitude slower on convs).
 * Choice order: `opts.backend`, then env `METALEARN_BACKEND`, then automatic.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerProjectGradients } from './gradients.js';
import { installOrtKernels, ortKernelInfo } from './ort-kernels.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface EngineInfo {
  backend: BackendName;
  /** why this backend was chosen */
  reason: string;
  /** compute threads the backend uses, where known */
  threads?: number;
  /** wasm: convolutions run in onnxruntime (`ort-kernels.ts`) with this many threads; absent: XNNPACK */
  ortConvThreads?: number;
}

export interface InitEngineOptions {
  backend?: BackendName;
  /** do not log the choice to stderr */
  quiet?: boolean;
  /** wasm: run Conv2D in onnxruntime (default true; env METALEARN_ORT_KERNELS=0 turns it off) */
  ortKernels?: boolean;
}

const BACKENDS: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];
let current: EngineInfo | null = null;
let pending: Promise<EngineInfo> | null = null;

/** The engine's current backend, or null before `initEngine()`. */
export function engineInfo(): EngineInfo | null {
  return current ? { ...current } : null;
}

function parseBackend(v: string, where: string): BackendName {
  if ((BACKENDS as readonly string[]).includes(v)) return v as BackendName;
  throw new Error(`${where}: unknown backend '${v}' (expected one of ${BACKENDS.join(', ')})`);
}

async function tryTensorflow(): Promise<string | null> {
  // optional peer dependency: a variable name keeps TypeScript and bundlers from resolving it
  const name = '@tensorflow/tfjs-node';
  try {
    await import(name);
    return null;
  } catch (e) {
    return (e as Error).message.split('\n')[0] ?? String(e);
  }
}

async function activate(b: BackendName): Promise<number | undefined> {
  if (b === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('engine/init.ts: the wasm backend failed to initialise');
    await tf.ready();
    aliasWasmIdentity();
    return wasm.getThreadsCount();
  }
  if (!(await tf.setBackend(b))) throw new Error(`engine/init.ts: the ${b} backend failed to initialise`);
  await tf.ready();
  return b === 'cpu' ? 1 : undefined;
}

let identityAliased = false;

/**
 * wasm's Identity kernel copies its input; tfjs runs it for every tensor the tape saves for the backward
 * pass (and every tf.clone), ~30 ms per 75x28x28x64 map. Tensor data are immutable, so the output can
 * share the input's buffer, as the wasm Reshape kernel (and the cpu backend's Identity) already do.
 */
function aliasWasmIdentity(): void {
  if (identityAliased) return;
  const orig = tf.getKernel('Identity', 'wasm');
  if (!orig) return;
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({
    kernelName: 'Identity',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const x = args.inputs['x'] as tf.TensorInfo;
      if (x.dtype === 'string') return orig.kernelFunc(args);
      (args.backend as unknown as { incRef(d: object): void }).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
  identityAliased = true;
}

async function doInit(opts: InitEngineOptions): Promise<EngineInfo> {
  // silences tfjs' "install tfjs-node" banner and debug checks
  tf.env().set('PROD', true);
  let backend: BackendName;
  let reason: string;
  const envVal = process.env['METALEARN_BACKEND'];
  if (opts.backend) {
    backend = parseBackend(opts.backend, 'initEngine({backend})');
    reason = 'requested by caller';
  } else if (envVal) {
    backend = parseBackend(envVal, 'env METALEARN_BACKEND');
    reason = 'forced by METALEARN_BACKEND';
  } else {
    const err = await tryTensorflow();
    if (err == null) {
      backend = 'tensorflow';
      reason = '@tensorflow/tfjs-node is installed';
    } else {
      backend = 'wasm';
      reason = '@tensorflow/tfjs-node not available';
    }
  }
  if (backend === 'tensorflow' && reason !== '@tensorflow/tfjs-node is installed') {
    const err = await tryTensorflow();
    if (err != null) throw new Error(`backend 'tensorflow' (${reason}) needs @tensorflow/tfjs-node: ${err}`);
  }
  const threads = await activate(backend);
  // after any backend package has loaded (tfjs-node registers tfjs' own gradients): ours win
  registerProjectGradients(true);
  const info: EngineInfo = threads === undefined ? { backend, reason } : { backend, reason, threads };
  if (backend === 'wasm') {
    const wanted = opts.ortKernels ?? process.env['METALEARN_ORT_KERNELS'] !== '0';
    if (installOrtKernels(wanted)) info.ortConvThreads = ortKernelInfo().threads;
  }
  if (!opts.quiet) {
    const conv = info.ortConvThreads ? `, convolutions in onnxruntime (${info.ortConvThreads} threads)` : '';
    process.stderr.write(`[metalearn] engine backend: ${backend} (${reason})${threads ? `, threads=${threads}` : ''}${conv}\n`);
  }
  return info;
}

/**
 * Choose and start the compute backend and register the project's gradients. Idempotent: later
 * calls return the same info (switching only when a different backend is explicitly requested).
 */
export async function initEngine(opts: InitEngineOptions = {}): Promise<EngineInfo> {
  if (pending) await pending.catch(() => undefined);
  if (current && (!opts.backend || opts.backend === current.backend)) {
    if (tf.getBackend() !== current.backend) await tf.setBackend(current.backend);
    return { ...current };
  }
  pending = doInit(opts);
  try {
    current = await pending;
    return { ...current };
  } finally {
    pending = null;
  }
}
