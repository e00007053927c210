/**
 * Sinusoid regression reproduction (Finn et al. 2017, §5.1): MLP 1-40-40-1 (ReLU), K-shot tasks
 * y = A·sin(x − φ), A ∈ [0.1, 5], φ ∈ [0, π], x ∈ [−5, 5]; one inner SGD step α = 0.01 during
 * meta-training, meta-batch 25, Adam β = 0.001; evaluation = MSE on 100 query points after 1 / 5 /
 * 10 SGD steps (α = 0.01) on the K support points, vs a network pretrained on all tasks (plain
 * regression on the task mixture) fine-tuned the same way.
 *
 * The meta-batch is vectorised: the fast weights carry a task dimension ([T, in, out], batched
 * matMul), so one inner step for all T tasks is one set of ops; the meta-gradient w.r.t. the shared
 * θ is exact (second order) because the tasks' fast weights are θ tiled over T minus α·(per-task grad).
 *
 *   node packages/optim/dist/repro/sinusoid.js --k 5 --iters 20000 [--pretrain-iters N] --out results/sinusoid
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, initEngine } from '@metalearn/core';
import { Adam } from '@metalearn/core';
import { innerLoop } from '../maml.js';
import { mse } from '../losses.js';
import { fromList, keysOf, toList } from '../params.js';
import type { FunctionalNet, Params } from '../types.js';
import { lineChart, parseArgs, writeOut } from './common.js';

/** MLP whose weights may carry a leading task dimension T: x [T, n, in] → [T, n, out]. */
export function taskBatchedMlp(sizes: number[]): FunctionalNet {
  const L = sizes.length - 1;
  return {
    init(rng: Rng): Params {
      // PyTorch Linear default: U(±1/√fan_in) for weight and bias
      const p: Params = {};
      for (let i = 0; i < L; i++) {
        const [a, b] = [sizes[i]!, sizes[i + 1]!];
        const s = 1 / Math.sqrt(a);
        p[`l${i}.weight`] = tf.tensor3d(Float32Array.from({ length: a * b }, () => rng.uniform(-s, s)), [1, a, b]);
        p[`l${i}.bias`] = tf.tensor3d(Float32Array.from({ length: b }, () => rng.uniform(-s, s)), [1, 1, b]);
      }
      return p;
    },
    apply(p: Params, x: tf.Tensor): tf.Tensor {
      return tf.tidy(() => {
        let h = x as tf.Tensor3D;
        const T = x.shape[0]!;
        for (let i = 0; i < L; i++) {
          let w = p[`l${i}.weight`] as tf.Tensor3D;
          if (w.shape[0] !== T) w = tf.tile(w, [T, 1, 1]);
          h = tf.add(tf.matMul(h, w), p[`l${i}.bias`]!) as tf.Tensor3D;
          if (i + 1 < L) h = tf.relu(h);
        }
        return h;
      });
    },
  };
}

interface Batch {
  xs: tf.Tensor3D;
  ys: tf.Tensor3D;
  xq: tf.Tensor3D;
  yq: tf.Tensor3D;
}

function sampleBatch(rng: Rng, T: number, k: number, q: number): Batch {
  const xs: number[] = [];
  const ys: number[] = [];
  const xq: number[] = [];
  const yq: number[] = [];
  for (let t = 0; t < T; t++) {
    const A = rng.uniform(0.1, 5);
    const ph = rng.uniform(0, Math.PI);
    for (let i = 0; i < k; i++) {
      const x = rng.uniform(-5, 5);
      xs.push(x);
      ys.push(A * Math.sin(x - ph));
    }
    for (let i = 0; i < q; i++) {
      const x = rng.uniform(-5, 5);
      xq.push(x);
      yq.push(A * Math.sin(x - ph));
    }
  }
  return { xs: tf.tensor3d(xs, [T, k, 1]), ys: tf.tensor3d(ys, [T, k, 1]), xq: tf.tensor3d(xq, [T, q, 1]), yq: tf.tensor3d(yq, [T, q, 1]) };
}

function disposeBatch(b: Batch) {
  for (const t of Object.values(b)) t.dispose();
}

/** Per-task mean MSE summed over tasks: its gradient w.r.t. task-batched weights is each task's own MSE gradient. */
const summedTaskMse = (out: tf.Tensor, y: tf.Tensor): tf.Scalar => tf.tidy(() => tf.mul(mse(out, y), out.shape[0]!) as tf.Scalar);

function tileParams(p: Params, T: number): Params {
  const o: Params = {};
  for (const k of keysOf(p)) o[k] = tf.tile(p[k]!, [T, 1, 1]);
  return o;
}

/** Post-update query MSE after each of 0..maxSteps SGD steps (α) on the support set, averaged over the tasks of `b`. */
export function evaluateSteps(net: FunctionalNet, theta: Params, b: Batch, alpha: number, maxSteps: number): number[] {
  const T = b.xs.shape[0];
  const out: number[] = [];
  let fast = tileParams(theta, T);
  const measure = () => {
    const l = tf.tidy(() => mse(net.apply(fast, b.xq, { training: true }), b.yq));
    out.push(l.dataSync()[0]!);
    l.dispose();
  };
  measure();
  for (let s = 0; s < maxSteps; s++) {
    const next = innerLoop({ net, loss: summedTaskMse, steps: 1, lr: alpha }, fast, b.xs, b.ys, false);
    for (const t of Object.values(fast)) t.dispose();
    fast = next;
    measure();
  }
  for (const t of Object.values(fast)) t.dispose();
  return out;
}

export interface SinusoidResult {
  k: number;
  iters: number;
  pretrainIters: number;
  metaBatch: number;
  alpha: number;
  evalTasks: number;
  msPerIter: number;
  maml: number[];
  pretrained: number[];
  paper: Record<string, number>;
  curve: [number, number][];
}

export async function runSinusoid(o: { k: number; iters: number; pretrainIters?: number; metaBatch: number; alpha: number; metaLr: number; evalTasks: number; seed: number; backend?: 'cpu' | 'wasm'; log?: (s: string) => void }): Promise<SinusoidResult> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  await initEngine({ backend: o.backend ?? 'cpu', quiet: true });
  const net = taskBatchedMlp([1, 40, 40, 1]);
  const rng = new Rng(o.seed);
  const init = net.init(rng.fork('init'));
  const keys = keysOf(init);
  const spec = { net, loss: summedTaskMse, steps: 1, lr: o.alpha };

  // --- MAML (second order, one inner step)
  let theta: Params = Object.fromEntries(keys.map((k) => [k, tf.clone(init[k]!)]));
  const adam = new Adam({ lr: o.metaLr });
  const curve: [number, number][] = [];
  const t0 = Date.now();
  const trainRng = rng.fork('maml-train');
  let avg = 0;
  for (let it = 1; it <= o.iters; it++) {
    const b = sampleBatch(trainRng, o.metaBatch, o.k, o.k);
    const { value, grads } = tf.tidy(() => {
      const r = tf.valueAndGrads((...ts: tf.Tensor[]) => {
        const fast = innerLoop(spec, tileParams(fromList(keys, ts), o.metaBatch), b.xs, b.ys, true);
        return mse(net.apply(fast, b.xq, { training: true }), b.yq);
      })(toList(theta, keys));
      return { value: r.value, grads: r.grads };
    });
    avg += value.dataSync()[0]!;
    value.dispose();
    const g = fromList(keys, grads);
    const next = adam.step(theta, g);
    for (const t of [...Object.values(theta), ...grads]) t.dispose();
    theta = next;
    disposeBatch(b);
    const every = Math.max(1, Math.floor(o.iters / 100));
    if (it % every === 0) {
      curve.push([it, avg / every]);
      avg = 0;
      if (it % (every * 10) === 0) log(`[sinusoid K=${o.k}] maml iter ${it}/${o.iters} meta-loss ${curve[curve.length - 1]![1].toFixed(4)} (${((Date.now() - t0) / it).toFixed(1)} ms/iter)`);
    }
  }
  const msPerIter = (Date.now() - t0) / o.iters;

  // --- pretrained baseline: regression on the mixture of tasks, same number of updates and batch
  let pre: Params = Object.fromEntries(keys.map((k) => [k, tf.clone(init[k]!)]));
  const adam2 = new Adam({ lr: o.metaLr });
  const preRng = rng.fork('pretrain');
  const pretrainIters = o.pretrainIters ?? o.iters;
  for (let it = 1; it <= pretrainIters; it++) {
    const b = sampleBatch(preRng, o.metaBatch, o.k, o.k);
    const grads = tf.tidy(() => tf.grads((...ts: tf.Tensor[]) => mse(net.apply(tileParams(fromList(keys, ts), o.metaBatch), b.xq, { training: true }), b.yq))(toList(pre, keys)));
    const next = adam2.step(pre, fromList(keys, grads));
    for (const t of [...Object.values(pre), ...grads]) t.dispose();
    pre = next;
    disposeBatch(b);
  }

  // --- evaluation on fresh tasks: K support points, 100 query points
  const evalB = sampleBatch(rng.fork('eval'), o.evalTasks, o.k, 100);
  const maml = evaluateSteps(net, theta, evalB, o.alpha, 10);
  const pretrained = evaluateSteps(net, pre, evalB, o.alpha, 10);
  disposeBatch(evalB);
  for (const t of [...Object.values(theta), ...Object.values(pre), ...Object.values(init)]) t.dispose();
  adam.dispose();
  adam2.dispose();
  const paper: Record<string, number> = o.k === 5 ? { step1: 0.67, step5: 0.38, step10: 0.35 } : {};
  return { k: o.k, iters: o.iters, pretrainIters, metaBatch: o.metaBatch, alpha: o.alpha, evalTasks: o.evalTasks, msPerIter, maml, pretrained, paper, curve };
}

async function main() {
  const a = parseArgs(process.argv.slice(2), { k: 5, iters: 20000, 'pretrain-iters': 0, 'meta-batch': 25, alpha: 0.01, 'meta-lr': 0.001, 'eval-tasks': 1000, seed: 1, out: 'results/sinusoid', backend: 'cpu' });
  const r = await runSinusoid({
    k: a.k as number,
    iters: a.iters as number,
    pretrainIters: (a['pretrain-iters'] as number) || undefined,
    metaBatch: a['meta-batch'] as number,
    alpha: a.alpha as number,
    metaLr: a['meta-lr'] as number,
    evalTasks: a['eval-tasks'] as number,
    seed: a.seed as number,
    backend: a.backend as 'cpu' | 'wasm',
  });
  const out = a.out as string;
  writeOut(out, `sinusoid-k${r.k}.json`, JSON.stringify(r, null, 2));
  const steps = (xs: number[]) => xs.map((y, i) => [i, y] as [number, number]);
  const series = [
    { name: `MAML K=${r.k}`, points: steps(r.maml) },
    { name: 'pretrained', points: steps(r.pretrained) },
  ];
  if (r.k === 5) series.push({ name: 'MAML paper', points: [[1, 0.67], [5, 0.38], [10, 0.35]] });
  writeOut(out, `sinusoid-k${r.k}-steps.svg`, lineChart(`Sinusoid K=${r.k}: query MSE after n SGD steps (α=${r.alpha})`, 'inner steps at test', 'MSE', series, { logY: true }));
  writeOut(out, `sinusoid-k${r.k}-curve.svg`, lineChart(`Sinusoid K=${r.k}: MAML meta-training loss`, 'iteration', 'post-update query MSE', [{ name: 'meta-loss', points: r.curve }], { logY: true }));
  const f = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(3));
  console.log(`sinusoid K=${r.k}, ${r.iters} iterations × ${r.metaBatch} tasks (${r.msPerIter.toFixed(1)} ms/iter), pretrained baseline ${r.pretrainIters} iterations, ${r.evalTasks} test tasks`);
  console.log(`steps        1      5      10`);
  console.log(`MAML        ${f(r.maml[1])}  ${f(r.maml[5])}  ${f(r.maml[10])}`);
  console.log(`pretrained  ${f(r.pretrained[1])}  ${f(r.pretrained[5])}  ${f(r.pretrained[10])}`);
  if (r.k === 5) console.log(`paper       0.670  0.380  0.350`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
