import * as path from 'node:path';
import { Subject } from 'rxjs';
import { listLearners, type BackendName } from '@metalearn/core';
import { EXIT, NonFiniteLossErrorWithCheckpoint, RunInterrupted, runPipeline, summaryLines } from './run.js';
import { PipelineValidationError, loadPipeline } from './validate.js';
import { datasetIds, datasetSchema } from './datasets.js';
import '@metalearn/metric';
import '@metalearn/optim';
import '@metalearn/memory';

const USAGE = `metalearn — declarative meta-learning pipelines

usage:
  metalearn run <pipeline.yaml|json> [--out DIR] [--resume] [--seed N] [--plain]
  metalearn validate <pipeline.yaml|json>
  metalearn list
  metalearn --help

run       train, evaluate (mean ± 95% CI), export ONNX, write DIR/{metrics.jsonl, checkpoints/,
          model.onnx, report.html, summary.json}. Ctrl-C stops with a final checkpoint;
          --resume continues from it.
validate  check a pipeline file against the schema (exit 2 with every error on failure)
list      registered learners, datasets and compute backends

exit codes: 0 ok, 1 failure, 2 invalid pipeline or usage, 3 training diverged (NaN loss), 130 interrupted`;

interface Args {
  cmd?: string;
  file?: string;
  out?: string;
  resume: boolean;
  seed?: number;
  plain: boolean;
  help: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
  const a: Args = { resume: false, plain: false, help: false };
  const pos: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i]!;
    const val = (): string => {
      const v = s.includes('=') ? s.slice(s.indexOf('=') + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`option ${s.split('=')[0]} needs a value`);
      return v;
    };
    if (s === '--help' || s === '-h') a.help = true;
    else if (s === '--resume') a.resume = true;
    else if (s === '--plain') a.plain = true;
    else if (s === '--out' || s.startsWith('--out=') || s === '-o') a.out = val();
    else if (s === '--seed' || s.startsWith('--seed=')) {
      const v = val();
      if (!/^-?\d+$/.test(v)) throw new UsageError(`--seed must be an integer, got '${v}'`);
      a.seed = Number(v);
    } else if (s.startsWith('-')) throw new UsageError(`unknown option '${s}'`);
    else pos.push(s);
  }
  a.cmd = pos[0];
  a.file = pos[1];
  if (pos.length > 2) throw new UsageError(`unexpected argument '${pos[2]}'`);
  return a;
}

function printValidation(io: CliIO, e: PipelineValidationError): void {
  io.stderr(`invalid pipeline ${e.message}\n`);
}

async function backends(): Promise<{ name: BackendName; available: boolean; note: string }[]> {
  const name = '@tensorflow/tfjs-node';
  let tfnode = false;
  try {
    await import(name);
    tfnode = true;
  } catch {
    tfnode = false;
  }
  return [
    { name: 'tensorflow', available: tfnode, note: tfnode ? 'native libtensorflow via @tensorflow/tfjs-node (default when installed)' : 'install @tensorflow/tfjs-node to enable' },
    { name: 'wasm', available: true, note: `WebAssembly (default without tfjs-node)` },
    { name: 'cpu', available: true, note: 'pure JS, tiny tests only' },
  ];
}

export interface CliIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** progress stream (default process.stderr) */
  progress?: NodeJS.WriteStream | null;
  /** install SIGINT/SIGTERM handlers (default true) */
  signals?: boolean;
}

const defaultIO: CliIO = { stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s) };

/** The `metalearn` command line; returns the exit code. */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    io.stderr(`${(e as Error).message}\n\n${USAGE}\n`);
    return EXIT.invalid;
  }
  if (args.help || !args.cmd) {
    io.stdout(USAGE + '\n');
    return args.help ? EXIT.ok : EXIT.invalid;
  }
  switch (args.cmd) {
    case 'list': {
      const lines: string[] = ['learners:'];
      for (const l of listLearners()) lines.push(`  ${l.id.padEnd(14)} ${l.family.padEnd(7)} ${l.description}`);
      lines.push('datasets:');
      for (const d of datasetIds()) {
        const s = datasetSchema(d) as { properties?: Record<string, unknown>; required?: string[] } | undefined;
        const opts = Object.keys(s?.properties ?? {}).filter((k) => k !== 'type');
        const req = (s?.required ?? []).filter((k) => k !== 'type');
        lines.push(`  ${d.padEnd(18)} options: ${opts.join(', ') || '-'}${req.length ? ` (required: ${req.join(', ')})` : ''}`);
      }
      lines.push('backends:');
      for (const b of await backends()) lines.push(`  ${b.name.padEnd(11)} ${b.available ? 'available  ' : 'unavailable'} ${b.note}`);
      io.stdout(lines.join('\n') + '\n');
      return EXIT.ok;
    }
    case 'validate': {
      if (!args.file) {
        io.stderr(`validate: missing <pipeline> file\n\n${USAGE}\n`);
        return EXIT.invalid;
      }
      try {
        const cfg = await loadPipeline(args.file, { datasets: datasetIds(), datasetSchema });
        io.stdout(`${args.file}: valid (${cfg.learner.id} on ${cfg.data.dataset}, ${cfg.train.iterations} iterations, ${cfg.evaluate.ways}-way ${cfg.evaluate.shots}-shot evaluation)\n`);
        return EXIT.ok;
      } catch (e) {
        if (e instanceof PipelineValidationError) {
          printValidation(io, e);
          return EXIT.invalid;
        }
        throw e;
      }
    }
    case 'run': {
      if (!args.file) {
        io.stderr(`run: missing <pipeline> file\n\n${USAGE}\n`);
        return EXIT.invalid;
      }
      const stop$ = new Subject<void>();
      let interrupts = 0;
      const onSigint = (): void => {
        interrupts++;
        if (interrupts === 1) {
          io.stderr('\nstopping after this step (final checkpoint); press Ctrl-C again to abort now\n');
          stop$.next();
        } else process.exit(EXIT.interrupted);
      };
      const signals = io.signals ?? true;
      if (signals) {
        process.on('SIGINT', onSigint);
        process.on('SIGTERM', onSigint);
      }
      try {
        const s = await runPipeline(args.file, {
          out: args.out,
          resume: args.resume,
          seed: args.seed,
          stop$,
          log: (l) => io.stdout(l + '\n'),
          ...(io.progress !== undefined ? { progressStream: io.progress } : {}),
          ...(args.plain ? { tty: false } : {}),
        });
        io.stdout(summaryLines(s).join('\n') + '\n');
        return s.onnx.parityOk === false ? EXIT.failure : EXIT.ok;
      } catch (e) {
        if (e instanceof PipelineValidationError) {
          printValidation(io, e);
          return EXIT.invalid;
        }
        if (e instanceof RunInterrupted) {
          io.stderr(`${e.message.replace(e.checkpoint, path.relative(process.cwd(), e.checkpoint))}\n`);
          return EXIT.interrupted;
        }
        if (e instanceof NonFiniteLossErrorWithCheckpoint) {
          io.stderr(`error: ${e.message}\n`);
          return EXIT.diverged;
        }
        throw e;
      } finally {
        if (signals) {
          process.off('SIGINT', onSigint);
          process.off('SIGTERM', onSigint);
        }
      }
    }
    default:
      io.stderr(`unknown command '${args.cmd}'\n\n${USAGE}\n`);
      return EXIT.invalid;
  }
}

