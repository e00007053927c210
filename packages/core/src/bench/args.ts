/** Command-line options of the benchmark (shared by `bench/cli.ts` and the app's `metalearn bench`). */
import type { BenchCompareOptions } from './index.js';
import { BENCH_WORKLOADS } from './workloads.js';
import type { BackendName } from '../engine/init.js';

export const BENCH_USAGE = `usage: bench [--workloads ${BENCH_WORKLOADS.join(',')}] [--iterations N] [--warmup N] [--backend wasm|cpu|tensorflow] [--onnx-threads N] [--seed N] [--torch | --no-torch] [--torch-threads N] [--python PATH] [--torch-ref PATH] [--torch-timeout SECONDS] [--paired] [--rounds N]`;

function intArg(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n)) throw new Error(`bench: ${flag} needs an integer, got ${JSON.stringify(v)}\n${BENCH_USAGE}`);
  return n;
}

export function parseBenchArgs(argv: readonly string[]): BenchCompareOptions {
  const o: BenchCompareOptions = { quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case '--workloads':
        if (!v) throw new Error(`bench: --workloads needs a comma-separated list\n${BENCH_USAGE}`);
        o.workloads = v.split(',').filter(Boolean);
        i++;
        break;
      case '--iterations':
        o.iterations = intArg(a, v);
        i++;
        break;
      case '--warmup':
        o.warmup = intArg(a, v);
        i++;
        break;
      case '--backend':
        o.backend = v as BackendName;
        i++;
        break;
      case '--onnx-threads':
        o.onnxThreads = intArg(a, v);
        i++;
        break;
      case '--seed':
        o.seed = intArg(a, v);
        i++;
        break;
      case '--torch':
        o.torch = 'on';
        break;
      case '--no-torch':
        o.torch = 'off';
        break;
      case '--torch-threads':
        o.torchThreads = intArg(a, v);
        if (o.torchThreads < 1) throw new Error(`bench: --torch-threads must be >= 1, got ${o.torchThreads}\n${BENCH_USAGE}`);
        i++;
        break;
      case '--torch-timeout': {
        const sec = intArg(a, v);
        if (sec < 1) throw new Error(`bench: --torch-timeout must be >= 1 second, got ${sec}\n${BENCH_USAGE}`);
        o.torchTimeoutMs = sec * 1000;
        i++;
        break;
      }
      case '--python':
      case '--torch-ref':
        if (!v) throw new Error(`bench: ${a} needs a path\n${BENCH_USAGE}`);
        if (a === '--python') o.python = v;
        else o.torchRef = v;
        i++;
        break;
      case '--paired':
        o.paired = true;
        break;
      case '--rounds':
        o.rounds = intArg(a, v);
        if (o.rounds < 1) throw new Error(`bench: --rounds must be >= 1, got ${o.rounds}\n${BENCH_USAGE}`);
        i++;
        break;
      case '-h':
      case '--help':
        process.stdout.write(BENCH_USAGE + '\n');
        process.exit(0);
        break;
      default:
        throw new Error(`bench: unknown argument '${a}'\n${BENCH_USAGE}`);
    }
  }
  return o;
}
