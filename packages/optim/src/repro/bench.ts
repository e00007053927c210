/**
 * Memory and speed of the optimisation-based learners on Conv-4, 5-way 1-shot, 15 queries, 28×28×1.
 *
 * Memory: peak tensor bytes (tf.profile().peakBytes, all tensors alive at once, incl. the tape's
 * saved tensors) of ONE meta-training step on one task, second-order MAML vs iMAML, for 1/5/10/20
 * inner steps. MAML keeps every inner step's graph; iMAML's inner loop keeps none, so it stays flat.
 *
 * Speed: median ms per meta-batch of 4 tasks (1 and 5 inner steps), the workloads of
 * ../shared/bench/torch_ref.py (fomaml_5w1s_metabatch4_1step, maml2_5w1s_metabatch4_1step,
 * maml2_5w1s_metabatch4_5step); with --torch FILE (that script's JSON lines) the ratio is printed.
 *
 *   node packages/optim/dist/repro/bench.js --out results/optim-bench [--torch torch.jsonl]
 *
 * --imaml-jvp adds iMAML's Gauss-Newton CG step with exact vs finite-difference J v (cgJvp).
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, getLearner, initEngine, randomEpisode, type Episode } from '@metalearn/core';
import '../index.js';
import { lineChart, parseArgs, writeOut } from './common.js';

function disposeEp(e: Episode) {
  e.support.x.dispose();
  e.query.x.dispose();
}

async function main() {
  const a = parseArgs(process.argv.slice(2), { out: 'results/optim-bench', steps: '1,5,10,20', filters: 64, reps: 5, torch: '', backend: 'wasm', 'skip-speed': false, 'skip-memory': false, 'imaml-jvp': false });
  const info = await initEngine({ backend: a.backend as 'wasm' | 'cpu', quiet: true });
  const shape = [28, 28, 1];
  const rng = new Rng(0);
  const backbone = { type: 'conv4', filters: a.filters as number };
  const result: Record<string, unknown> = { backend: info.backend, threads: info.threads, filters: a.filters };

  if (!a['skip-memory']) {
    const steps = String(a.steps).split(',').map(Number);
    const mem: { steps: number; maml: number; imaml: number; mamlMs: number; imamlMs: number }[] = [];
    for (const s of steps) {
      const row = { steps: s, maml: 0, imaml: 0, mamlMs: 0, imamlMs: 0 };
      for (const id of ['maml', 'imaml'] as const) {
        const l = getLearner(id).create(id === 'maml' ? { backbone, innerSteps: s, innerLr: 0.4 } : { backbone, innerSteps: s, innerLr: 0.1, cgSteps: 5, lambda: 2 }, { inputShape: shape, seed: 1 });
        const e = randomEpisode(rng, { ways: 5, shots: 1, queries: 15, shape });
        const t0 = Date.now();
        const prof = await tf.profile(() => {
          l.metaTrainStep([e]);
        });
        row[id === 'maml' ? 'mamlMs' : 'imamlMs'] = Date.now() - t0;
        row[id] = prof.peakBytes;
        disposeEp(e);
        l.dispose();
      }
      process.stderr.write(`[bench] steps=${s}: peak MAML ${(row.maml / 2 ** 20).toFixed(1)} MiB (${row.mamlMs} ms), iMAML ${(row.imaml / 2 ** 20).toFixed(1)} MiB (${row.imamlMs} ms)\n`);
      mem.push(row);
    }
    result.memory = mem;
    writeOut(
      a.out as string,
      'memory.svg',
      lineChart(
        'Peak tensor memory of one meta-step (Conv-4, 5-way 1-shot)',
        'inner steps',
        'MiB',
        [
          { name: 'MAML (2nd order)', points: mem.map((r) => [r.steps, r.maml / 2 ** 20]) },
          { name: 'iMAML (CG 5)', points: mem.map((r) => [r.steps, r.imaml / 2 ** 20]) },
        ],
      ),
    );
  }

  if (!a['skip-speed']) {
    const torch: Record<string, number> = {};
    if (a.torch) {
      for (const line of fs.readFileSync(a.torch as string, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const j = JSON.parse(line) as { workload: string; ms: number };
        torch[j.workload] = j.ms;
      }
    }
    const work = [
      { name: 'fomaml_5w1s_metabatch4_1step', id: 'fomaml', steps: 1 },
      { name: 'maml2_5w1s_metabatch4_1step', id: 'maml', steps: 1 },
      { name: 'maml2_5w1s_metabatch4_5step', id: 'maml', steps: 5 },
      { name: 'imaml_5w1s_metabatch4_5step', id: 'imaml', steps: 5 },
    ];
    const speed: Record<string, unknown>[] = [];
    for (const w of work) {
      const l = getLearner(w.id).create({ backbone, innerSteps: w.steps, innerLr: 0.4 }, { inputShape: shape, seed: 1 });
      const batch = [0, 1, 2, 3].map(() => randomEpisode(rng, { ways: 5, shots: 1, queries: 15, shape }));
      const times: number[] = [];
      for (let i = 0; i < (a.reps as number) + 1; i++) {
        const t0 = performance.now();
        l.metaTrainStep(batch);
        if (i > 0) times.push(performance.now() - t0); // first = warm-up
      }
      times.sort((x, y) => x - y);
      const ms = times[Math.floor(times.length / 2)]!;
      const row: Record<string, unknown> = { workload: w.name, ms: +ms.toFixed(1) };
      if (torch[w.name]) row.torchMs = torch[w.name];
      if (torch[w.name]) row.ratio = +(ms / torch[w.name]!).toFixed(2);
      process.stderr.write(`[bench] ${JSON.stringify(row)}\n`);
      speed.push(row);
      batch.forEach(disposeEp);
      l.dispose();
    }
    result.speed = speed;
  }

  if (a['imaml-jvp']) {
    // iMAML's Gauss-Newton CG with exact (double-backward) vs finite-difference J v, at the settings
    // of examples/optim-imaml-omniglot.yaml (8 steps α 0.1, λ 2, 5 CG steps, 1 training query per
    // class), median ms per meta-batch of 4 tasks; the two alternate within each repetition
    const mk = (cgJvp: string) => getLearner('imaml').create({ backbone, innerSteps: 8, innerLr: 0.1, lambda: 2, cgSteps: 5, cgMatrix: 'gauss-newton', cgJvp }, { inputShape: shape, seed: 1 });
    const learners = { exact: mk('exact'), 'finite-difference': mk('finite-difference') };
    const batch = [0, 1, 2, 3].map(() => randomEpisode(rng, { ways: 5, shots: 1, queries: 1, shape }));
    const times: Record<string, number[]> = { exact: [], 'finite-difference': [] };
    for (let i = 0; i < (a.reps as number) + 1; i++) {
      for (const [k, l] of Object.entries(learners)) {
        const t0 = performance.now();
        l.metaTrainStep(batch);
        if (i > 0) times[k]!.push(performance.now() - t0);
      }
    }
    const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const row = { workload: 'imaml_gn_5w1s_1query_metabatch4_8step_5cg', exactMs: +med(times.exact!).toFixed(1), finiteDifferenceMs: +med(times['finite-difference']!).toFixed(1), speedup: 0 };
    row.speedup = +(row.exactMs / row.finiteDifferenceMs).toFixed(2);
    process.stderr.write(`[bench] ${JSON.stringify(row)}\n`);
    result.imamlJvp = row;
    batch.forEach(disposeEp);
    Object.values(learners).forEach((l) => l.dispose());
  }
  const f = writeOut(a.out as string, 'bench.json', JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result));
  console.log(`wrote ${f}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
