#!/usr/bin/env node
/**
 * `node dist/bench/cli.js [--workloads a,b] [--iterations 10] [--warmup 2] [--backend wasm|cpu|tensorflow]
 *  [--onnx-threads N] [--seed 0]` — prints one JSON line per workload: {workload, backend, ms}.
 */
import { runBench } from './index.js';
import { parseBenchArgs } from './args.js';

async function main(): Promise<void> {
  const opts = parseBenchArgs(process.argv.slice(2));
  await runBench({ ...opts, onRow: (r) => process.stdout.write(JSON.stringify(r) + '\n') });
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
