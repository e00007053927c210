#!/usr/bin/env node
/**
 * `node dist/bench/cli.js [--workloads a,b] [--iterations 10] [--warmup 2] [--backend wasm|cpu|tensorflow]
 *  [--onnx-threads N] [--seed 0] [--torch]` — prints one JSON line per workload: {workload, backend, ms}; with
 *  `--torch`, after ours PyTorch's reference runs and rows add {torch_workload, torch_ms, ratio, ...}.
 */
import { runBench, runBenchComparison } from './index.js';
import { parseBenchArgs } from './args.js';

async function main(): Promise<void> {
  const opts = parseBenchArgs(process.argv.slice(2));
  if (opts.torch !== 'on') {
    // ours only, rows as they are measured (`--torch`: then PyTorch's reference, rows with both)
    await runBench({ ...opts, onRow: (r) => process.stdout.write(JSON.stringify(r) + '\n') });
    return;
  }
  const r = await runBenchComparison(opts);
  for (const row of r.rows) process.stdout.write(JSON.stringify(row) + '\n');
  process.stderr.write(`bench: ${r.status}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
