/**
 * Benchmark of the engine on the workloads of /work/shared/bench/torch_ref.py (PyTorch reference):
 * Conv-4 (64 filters, 28x28x1 inputs, batch-norm with batch statistics) forward batch 80,
 * forward+backward batch 80, a ProtoNet 5-way 1-shot 15-query episode step (Adam), FOMAML and
 * second-order MAML meta-batches of 4 tasks with 1 and 5 inner steps (alpha 0.4, Adam outer step),
 * plus the onnxruntime forward of the same network. One row per workload: median milliseconds.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../rng.js';
import { initEngine, type BackendName } from '../engine/init.js';
import { crossEntropy } from '../engine/ops.js';
import { conv4 } from '../nn/backbones.js';
import { Dense } from '../nn/layers.js';
import type { Sequential } from '../nn/sequential.js';
import type { Params } from '../nn/types.js';
import { exportOnnx } from '../onnx/export.js';
import { OnnxRunner } from '../onnx/runtime.js';
import { compileLossGrad, compileMamlTask, crossEntropyNodes, protoLogitsNodes, shapesOf, type OrtGraph } from '../onnx/graph.js';
import { median, oneHotRows } from '../metrics.js';
import { Adam } from '../optim/adam.js';
import { BENCH_WORKLOADS } from './workloads.js';
import { compareWithTorch, findTorchRef, probeTorch, runTorchReference, TORCH_COUNTERPART, TorchPairedRunner, type BenchComparisonRow, type TorchStatus, type TorchTiming } from './torch.js';

export { BENCH_WORKLOADS, type BenchWorkload } from './workloads.js';
export { randomEpisode } from './episodes.js';

export interface BenchRow {
  workload: string;
  /** tfjs backend, or 'onnxruntime' for the exported-graph forward */
  backend: string;
  /** median wall time of one iteration, milliseconds (with several rounds: the median of the rounds') */
  ms: number;
  /** with {@link BenchOptions.rounds} > 1 or a `pair`: each round's median, and PyTorch's right after it */
  rounds?: { ms: number; torch_ms: number | null }[];
}

export interface BenchOptions {
  /** workloads to run (default: all) */
  workloads?: readonly string[];
  /** timed iterations per workload (default 10, as torch_ref.py) */
  iterations?: number;
  /** untimed warm-up iterations (default 2) */
  warmup?: number;
  /** tfjs backend (default: the engine's automatic choice) */
  backend?: BackendName;
  /** onnxruntime intra-op threads (default: onnxruntime's choice) */
  onnxThreads?: number;
  seed?: number;
  /** called with each row as soon as it is measured */
  onRow?: (row: BenchRow) => void;
  /** measure each workload this many times (default 1), each time followed by `pair` */
  rounds?: number;
  /**
   * Called after each round of a workload with the iterations and warm-up used: PyTorch's median ms
   * for the same work measured right then (`bench --paired`), or null when it has none.
   */
  pair?: (workload: string, iterations: number, warmup: number) => Promise<number | null>;
  quiet?: boolean;
  /** workloads defined by the caller (the app's learner rows), run after core's and named like them */
  extra?: readonly BenchExtraWorkload[];
}

/**
 * A workload that core cannot build itself (e.g. a learner of an upper package on worker threads),
 * timed like core's own: `setup` (not timed) returns one iteration and what frees it.
 */
export interface BenchExtraWorkload {
  workload: string;
  /** the row's backend column */
  backend: string;
  /** torch_ref.py's workload it is compared with */
  torch: string;
  setup(): Promise<{ step: () => void; close: () => Promise<void> | void }>;
}

/** Workload names of a run: core's plus the extras' (an extra may not reuse a core name). */
function knownWorkloads(extra: readonly BenchExtraWorkload[]): string[] {
  for (const e of extra) {
    if ((BENCH_WORKLOADS as readonly string[]).includes(e.workload)) throw new Error(`bench: extra workload '${e.workload}' has the name of a core workload`);
  }
  return [...BENCH_WORKLOADS, ...extra.map((e) => e.workload)];
}

/** PyTorch counterparts of core's workloads and of the extras. */
export function torchCounterparts(extra: readonly BenchExtraWorkload[] = []): Record<string, string> {
  return { ...TORCH_COUNTERPART, ...Object.fromEntries(extra.map((e) => [e.workload, e.torch])) };
}

const W = 5;
const K = 1;
const Q = 15;
const ALPHA = 0.4;

function timeit(fn: () => void, n: number, warm: number): number {
  for (let i = 0; i < warm; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  return Math.round(median(ts) * 100) / 100;
}

async function timeitAsync(fn: () => Promise<void>, n: number, warm: number): Promise<number> {
  for (let i = 0; i < warm; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    ts.push(performance.now() - t);
  }
  return Math.round(median(ts) * 100) / 100;
}

function labels(ways: number, per: number): Int32Array {
  const y = new Int32Array(ways * per);
  for (let c = 0; c < ways; c++) for (let i = 0; i < per; i++) y[c * per + i] = c;
  return y;
}

/** The benchmark network: the project's Conv-4 backbone (nn/backbones.ts) + a linear head. */
export function benchNet(): { backbone: Sequential; full: Sequential } {
  const backbone = conv4({ inputShape: [28, 28, 1], filters: 64, trackRunningStats: false });
  const full = backbone.extend(new Dense({ name: 'head', units: W }));
  return { backbone, full };
}

/** Timed passes of the 600-episode evaluation (each pass is 600 episodes): at most this many. */
export const EVAL_ITERATIONS = 3;
export const EVAL_EPISODES = 600;

/**
 * ProtoNet evaluation as `metalearn eval --engine onnx` runs it: the Conv-4 backbone (running-statistics
 * batch norm) exported to ONNX once, then per episode one onnxruntime call on the 5 support + 75 query
 * images, prototypes, nearest prototype by squared distance, accuracy. A pool of 8 random episodes is
 * cycled (as bench-ref/torch_eval.py does). Returns the median ms of one 600-episode pass.
 */
async function evalWorkload(rng: Rng, n: number, warm: number, threads?: number): Promise<number> {
  const net = conv4({ inputShape: [28, 28, 1], filters: 64, trackRunningStats: true });
  const params = net.init(rng.fork('params'));
  const state = net.initState();
  const model = exportOnnx(net, params, { state });
  tf.dispose([...Object.values(params), ...Object.values(state)]);
  const runner = await OnnxRunner.create(model, threads ? { intraOpNumThreads: threads } : {});
  const per = W * (K + Q);
  const pool = Array.from({ length: 8 }, () => Float32Array.from(rng.normalArray(per * 28 * 28)));
  const yq = labels(W, Q);
  let correct = 0;
  const pass = async () => {
    for (let e = 0; e < EVAL_EPISODES; e++) {
      const r = await runner.run(pool[e % pool.length]!, [per, 28, 28, 1]);
      const z = r.data;
      const dim = r.shape[1]!;
      // prototypes = the support embeddings (1 shot), rows 0..W-1; queries follow
      for (let q = 0; q < W * Q; q++) {
        const zq = (W * K + q) * dim;
        let best = 0;
        let bestD = Infinity;
        for (let c = 0; c < W; c++) {
          let d = 0;
          for (let k = 0; k < dim; k++) {
            const t = z[zq + k]! - z[c * dim + k]!;
            d += t * t;
          }
          if (d < bestD) {
            bestD = d;
            best = c;
          }
        }
        if (best === yq[q]) correct++;
      }
    }
  };
  try {
    return await timeitAsync(pass, n, warm);
  } finally {
    await runner.release();
    void correct;
  }
}

/** Run the benchmark; returns one row per workload (also reported through `opts.onRow`). */
export async function runBench(opts: BenchOptions = {}): Promise<BenchRow[]> {
  const extras = new Map((opts.extra ?? []).map((e) => [e.workload, e]));
  const known = knownWorkloads(opts.extra ?? []);
  const names = opts.workloads ?? known;
  for (const w of names) {
    if (!known.includes(w)) throw new Error(`bench: unknown workload '${w}' (known: ${known.join(', ')})`);
  }
  const n = opts.iterations ?? 10;
  const warm = opts.warmup ?? 2;
  const rounds = opts.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`bench: rounds must be a positive integer, got ${rounds}`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`bench: iterations must be a positive integer, got ${n}`);
  if (!Number.isInteger(warm) || warm < 0) throw new Error(`bench: warmup must be a non-negative integer, got ${warm}`);
  const info = await initEngine({ backend: opts.backend, quiet: opts.quiet ?? true });
  const backend = info.backend;
  const rng = new Rng(opts.seed ?? 0);
  const { backbone, full } = benchNet();
  let params: Params = full.init(rng.fork('params'));
  const bbKeys = Object.keys(params).filter((k) => !k.startsWith('head.'));
  const allKeys = Object.keys(params);
  const randn = (shape: number[]) => tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1)), shape);
  const x80 = randn([80, 28, 28, 1]);
  const xs = randn([W * K, 28, 28, 1]);
  const xq = randn([W * Q, 28, 28, 1]);
  const ys = labels(W, K);
  const yq = labels(W, Q);
  const train = { training: true };
  const pick = (keys: string[], vals: tf.Tensor[]): Params => Object.fromEntries(keys.map((k, i) => [k, vals[i]!]));
  // the learners' Adam (core/optim/adam.ts), updating `params` in place of the stepped keys
  const adam = new Adam({ lr: 1e-3 });
  const opt = {
    step(ps: Params, grads: Params): void {
      const next = adam.step(pick(Object.keys(grads), Object.keys(grads).map((k) => ps[k]!)), grads);
      for (const [k, t] of Object.entries(next)) {
        ps[k]!.dispose();
        ps[k] = t;
      }
    },
    dispose: () => adam.dispose(),
  };
  const rows: BenchRow[] = [];
  // each workload: `rounds` measurements, each followed by PyTorch's (opts.pair) when pairing
  const emit = async (workload: string, b: string, measure: () => number | Promise<number>) => {
    const rs: { ms: number; torch_ms: number | null }[] = [];
    for (let r = 0; r < rounds; r++) {
      const ms = await measure();
      rs.push({ ms, torch_ms: opts.pair ? await opts.pair(workload, n, warm) : null });
    }
    const row: BenchRow = { workload, backend: b, ms: rounds === 1 ? rs[0]!.ms : Math.round(median(rs.map((x) => x.ms)) * 100) / 100 };
    if (rounds > 1 || opts.pair) row.rounds = rs;
    rows.push(row);
    opts.onRow?.(row);
  };

  const fwd80 = () => {
    const t = tf.tidy(() => backbone.apply(params, x80, train));
    t.dataSync();
    t.dispose();
  };
  const fwdBwd80 = () => {
    const gs = tf.tidy(() =>
      tf.grads((...v: tf.Tensor[]) => tf.mean(tf.square(backbone.apply(pick(bbKeys, v), x80, train))) as tf.Scalar)(bbKeys.map((k) => params[k]!)),
    );
    gs[0]!.dataSync();
    tf.dispose(gs);
  };
  const protonet = () => {
    const gs = tf.tidy(() =>
      tf.grads((...v: tf.Tensor[]) => {
        const p = pick(bbKeys, v);
        const zs = backbone.apply(p, xs, train);
        const zq = backbone.apply(p, xq, train);
        const protos = tf.mean(tf.reshape(zs, [W, K, -1]), 1);
        // squared euclidean distances [W*Q, W]
        const d = tf.add(
          tf.sub(tf.sum(tf.square(zq), 1, true), tf.mul(tf.matMul(zq, protos, false, true), 2)),
          tf.reshape(tf.sum(tf.square(protos), 1), [1, W]),
        );
        return crossEntropy(tf.neg(d) as tf.Tensor2D, yq);
      })(bbKeys.map((k) => params[k]!)),
    );
    opt.step(params, pick(bbKeys, gs));
    tf.dispose(gs);
  };
  const mamlStep = (firstOrder: boolean, steps: number, metaBatch = 4) => {
    const inner = (p: Params) => crossEntropy(full.apply(p, xs, train) as tf.Tensor2D, ys);
    const adapt = (v: tf.Tensor[]): tf.Tensor[] => {
      let fast = v;
      for (let s = 0; s < steps; s++) {
        const g = tf.grads((...u: tf.Tensor[]) => inner(pick(allKeys, u)))(fast);
        fast = fast.map((t, i) => tf.sub(t, tf.mul(g[i]!, ALPHA)));
      }
      return fast;
    };
    const outerLoss = (fast: tf.Tensor[]) => crossEntropy(full.apply(pick(allKeys, fast), xq, train) as tf.Tensor2D, yq);
    const total = tf.tidy(() => {
      let acc: tf.Tensor[] | null = null;
      for (let t = 0; t < metaBatch; t++) {
        let g: tf.Tensor[];
        if (firstOrder) {
          // fast weights as constants: the meta-gradient is the query gradient at the fast weights
          const fast = tf.tidy(() => adapt(allKeys.map((k) => params[k]!)));
          g = tf.grads((...u: tf.Tensor[]) => outerLoss(u))(fast);
          tf.dispose(fast);
        } else {
          g = tf.grads((...u: tf.Tensor[]) => outerLoss(adapt(u)))(allKeys.map((k) => params[k]!));
        }
        acc = acc ? acc.map((a, i) => tf.add(a, g[i]!)) : g;
      }
      return acc!;
    });
    opt.step(params, pick(allKeys, total));
    tf.dispose(total);
  };

  const tfWork: Record<string, () => void> = {
    conv4_fwd_batch80: fwd80,
    conv4_fwd_bwd_batch80: fwdBwd80,
    protonet_5w1s_episode: protonet,
    fomaml_5w1s_metabatch4_1step: () => mamlStep(true, 1),
    maml2_5w1s_metabatch4_1step: () => mamlStep(false, 1),
    maml2_5w1s_metabatch4_5step: () => mamlStep(false, 5),
  };
  // graph engine: each workload compiles its graph once (outside the timing, like a warm-up)
  const graphs: OrtGraph[] = [];
  const bbShapes = shapesOf(params, bbKeys);
  const allShapes = shapesOf(params, allKeys);
  const oneHot = (y: Int32Array) => oneHotRows(y, W);
  const feedsOf = (keys: string[], extra: Record<string, Float32Array>) => {
    const f: Record<string, Float32Array> = { ...extra };
    for (const k of keys) f[k] = params[k]!.dataSync() as Float32Array;
    return f;
  };
  const gradsOf = (out: Record<string, Float32Array>, keys: string[], acc?: Record<string, Float32Array>) => {
    const r = acc ?? {};
    for (const k of keys) {
      const gk = out[`grad:${k}`]!;
      const a = r[k];
      if (a) for (let i = 0; i < a.length; i++) a[i]! += gk[i]!;
      else r[k] = gk.slice();
    }
    return r;
  };
  const adamStep = (grads: Record<string, Float32Array>) => {
    const gt: Params = {};
    for (const [k, v] of Object.entries(grads)) gt[k] = tf.tensor(v, params[k]!.shape);
    opt.step(params, gt);
    tf.dispose(Object.values(gt));
  };
  const graphWork = (w: string): (() => void) => {
    if (w === 'graph_conv4_fwd_bwd_batch80') {
      const g = compileLossGrad(backbone, bbShapes, (tg, net) => {
        const z = net(tg.addInput('x', [80, 28, 28, 1]));
        const [m, d] = tg.shapeOf(z) as [number, number];
        const s = tg.addNode('ReduceSum', [tg.addNode('Mul', [z, z]), tg.int64([0, 1])], { keepdims: 0 });
        return tg.addNode('Mul', [s, tg.float(1 / (m * d), [])]);
      });
      graphs.push(g);
      const x = x80.dataSync() as Float32Array;
      return () => void g.run(feedsOf(bbKeys, { x }));
    }
    if (w === 'graph_protonet_5w1s_episode') {
      const g = compileLossGrad(backbone, bbShapes, (tg, net) => {
        const zs = net(tg.addInput('xs', [W * K, 28, 28, 1]));
        const zq = net(tg.addInput('xq', [W * Q, 28, 28, 1]));
        const d = tg.shapeOf(zs)[1]!;
        const protos = tg.addNode('ReduceMean', [tg.addNode('Reshape', [zs, tg.int64([W, K, d])])], { axes: [1], keepdims: 0 });
        return crossEntropyNodes(tg, protoLogitsNodes(tg, zq, protos), tg.addInput('yq', [W * Q, W]));
      });
      graphs.push(g);
      const extra = { xs: xs.dataSync() as Float32Array, xq: xq.dataSync() as Float32Array, yq: oneHot(yq) };
      return () => adamStep(gradsOf(g.run(feedsOf(bbKeys, extra)), bbKeys));
    }
    const steps = w.endsWith('_5step') ? 5 : 1;
    const g = compileMamlTask({ model: full, shapes: allShapes, support: W * K, query: W * Q, ways: W, innerSteps: steps, innerLr: ALPHA, firstOrder: w.includes('fomaml') });
    graphs.push(g);
    const extra = { xs: xs.dataSync() as Float32Array, xq: xq.dataSync() as Float32Array, ys: oneHot(ys), yq: oneHot(yq) };
    return () => {
      const feeds = feedsOf(allKeys, extra);
      let acc: Record<string, Float32Array> | undefined;
      for (let t = 0; t < 4; t++) acc = gradsOf(g.run(feeds), allKeys, acc);
      adamStep(acc!);
    };
  };
  try {
    for (const w of names) {
      const ex = extras.get(w);
      if (ex) {
        const s = await ex.setup();
        try {
          await emit(w, ex.backend, () => timeit(s.step, n, warm));
        } finally {
          await s.close();
        }
      } else if (w.startsWith('graph_')) {
        const work = graphWork(w);
        await emit(w, 'onnxruntime-graph', () => timeit(work, n, warm));
      } else if (w === 'onnx_conv4_fwd_batch80') {
        const model = exportOnnx(backbone, pick(bbKeys, bbKeys.map((k) => params[k]!)), { batchStats: true });
        const runner = await OnnxRunner.create(model, opts.onnxThreads ? { intraOpNumThreads: opts.onnxThreads } : {});
        const data = x80.dataSync() as Float32Array;
        try {
          await emit(w, 'onnxruntime', () =>
            timeitAsync(
              async () => {
                await runner.run(data, [80, 28, 28, 1]);
              },
              n,
              warm,
            ),
          );
        } finally {
          await runner.release();
        }
      } else if (w === 'protonet_eval_5w1s_600ep_onnx') {
        await emit(w, 'onnxruntime', () => evalWorkload(rng.fork('eval'), Math.min(n, EVAL_ITERATIONS), Math.min(warm, 1), opts.onnxThreads));
      } else {
        await emit(w, backend, () => timeit(tfWork[w]!, n, warm));
      }
    }
  } finally {
    for (const g of graphs) g.release();
    opt.dispose();
    tf.dispose([...Object.values(params), x80, xs, xq]);
    params = {};
  }
  return rows;
}

export { parseBenchArgs, BENCH_USAGE } from './args.js';
export {
  parseTorchOutput,
  compareWithTorch,
  benchRatio,
  formatBenchTable,
  findTorchRef,
  probeTorch,
  TORCH_COUNTERPART,
  TorchPairedRunner,
  type BenchComparisonRow,
  type TorchTiming,
  type TorchStatus,
} from './torch.js';

export interface BenchCompareOptions extends BenchOptions {
  /** 'auto' (default): run PyTorch's reference when the Python has torch; 'on' (--torch): the same, and say
   * why when it cannot; 'off' (--no-torch): ours only */
  torch?: 'auto' | 'on' | 'off';
  /** PyTorch threads (torch_ref.py's argument; default 2) */
  torchThreads?: number;
  /** Python with torch (default env METALEARN_PYTHON, else /usr/bin/python3) */
  python?: string;
  /** torch_ref.py (default: env METALEARN_TORCH_REF, else shared/bench/torch_ref.py beside an ancestor dir) */
  torchRef?: string;
  /** limit per reference script (default 20 minutes; with `paired`, per answer) */
  torchTimeoutMs?: number;
  /**
   * `--paired`: PyTorch runs right after each of our rounds, workload by workload (torch_ref.py's own
   * step functions and timeit, served by bench-ref/torch_paired.py), instead of the whole script after
   * all of ours; rounds default to 3 then
   */
  paired?: boolean;
}

export interface BenchComparison {
  rows: BenchComparisonRow[];
  torch: TorchStatus & { ran: boolean; threads: number; notes: string[] };
  /** one line: how torch ran, or why it did not */
  status: string;
}

/**
 * Our benchmark, then (right after, in the same invocation, so both see the same machine load) the
 * PyTorch reference for the same workloads; rows carry both medians and ours/torch. Never fails for
 * want of Python or torch: the rows then have null torch figures and `status` says why.
 */
export async function runBenchComparison(opts: BenchCompareOptions = {}): Promise<BenchComparison> {
  const mode = opts.torch ?? 'auto';
  const threads = opts.torchThreads ?? 2;
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`bench: torch threads must be a positive integer, got ${threads}`);
  const python = opts.python ?? process.env['METALEARN_PYTHON'] ?? '/usr/bin/python3';
  const probe: TorchStatus = mode === 'off' ? { available: false, python, reason: 'skipped (--no-torch)' } : probeTorch(python);
  const notes: string[] = [];
  const timeoutMs = opts.torchTimeoutMs ?? 20 * 60_000;
  const rounds = opts.rounds ?? (opts.paired ? 3 : 1);
  let runner: TorchPairedRunner | null = null;
  if (opts.paired && probe.available) {
    const ref = findTorchRef(opts.torchRef);
    if (!ref) notes.push('torch_ref.py not found (set --torch-ref or METALEARN_TORCH_REF)');
    else {
      try {
        runner = await TorchPairedRunner.start(python, ref, threads, timeoutMs);
      } catch (e) {
        notes.push(`paired PyTorch could not start: ${(e as Error).message}`);
      }
    }
  }
  const live = runner;
  const counterparts = torchCounterparts(opts.extra);
  let failed = false;
  const pair = live
    ? async (w: string, n: number, warm: number): Promise<number | null> => {
        const tw = counterparts[w];
        if (failed || !tw || !live.workloads.includes(tw)) return null;
        try {
          return await live.time(tw, n, warm);
        } catch (e) {
          failed = true;
          notes.push((e as Error).message);
          return null;
        }
      }
    : undefined;
  let ours: BenchRow[];
  try {
    ours = await runBench({ ...opts, rounds, pair });
  } finally {
    live?.close();
  }
  // the whole reference scripts, after ours, for the rows that have no paired figures
  const unpaired = ours.filter((r) => !(r.rounds?.length && r.rounds.every((x) => x.torch_ms !== null)));
  let timings: TorchTiming[] | null = null;
  if (probe.available && unpaired.length) {
    const r = runTorchReference({
      python,
      threads,
      torchRef: findTorchRef(opts.torchRef),
      workloads: unpaired.map((x) => x.workload),
      evalIterations: Math.min(opts.iterations ?? 10, EVAL_ITERATIONS),
      evalWarmup: Math.min(opts.warmup ?? 2, 1),
      timeoutMs,
      counterparts,
    });
    timings = r.timings;
    notes.push(...r.notes);
  }
  const why = probe.available ? (notes.length ? notes.join('; ') : undefined) : `torch unavailable: ${probe.reason}`;
  const rows = compareWithTorch(ours, timings, probe.available ? threads : null, why, counterparts);
  const anyPaired = rows.some((r) => r.paired);
  const how = anyPaired
    ? `ran right after each of our ${rounds} round(s), workload by workload (torch_ref.py's functions via bench-ref/torch_paired.py); ratio = median of the rounds' ours / torch${unpaired.length ? ' (rows without a torch_ref.py counterpart: the reference scripts after ours)' : ''}`
    : 'ran right after ours in this invocation; ratio = ours / torch';
  const status = probe.available ? `torch ${probe.version} (${python}, ${threads} threads) ${how}${notes.length ? `; ${notes.join('; ')}` : ''}` : `torch unavailable (${probe.reason}): our figures only`;
  return { rows, torch: { ...probe, ran: probe.available, threads, notes }, status };
}
