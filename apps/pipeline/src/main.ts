import * as path from 'node:path';
import { Subject } from 'rxjs';
import { listLearners, type BackendName } from '@metalearn/core';
import { DataError } from '@metalearn/data';
import { EXIT, NonFiniteLossErrorWithCheckpoint, RunInterrupted, runPipeline, summaryLines } from './run.js';
import { PipelineValidationError, loadPipeline } from './validate.js';
import { datasetIds, datasetSchema } from './datasets.js';
import { InputError, bench, evalCheckpoint, exportCheckpoint, predictOnnx } from './commands.js';
import { BENCH_USAGE, BENCH_WORKLOADS, formatBenchTable, formatByInstance, formatPercentCI, parseBenchArgs, type BenchCompareOptions } from '@metalearn/core';
import { LEARNER_BENCH_WORKLOADS } from './bench-learners.js';
import '@metalearn/metric';
import '@metalearn/optim';
import '@metalearn/memory';

const USAGE = `metalearn — declarative meta-learning pipelines

usage:
  metalearn run <pipeline.yaml|json> [--out DIR] [--resume] [--seed N] [--plain]
  metalearn validate <pipeline.yaml|json>
  metalearn list
  metalearn eval <checkpoint> [--episodes N] [--ways N] [--shots N] [--queries N]
                 [--data <pipeline file | dataset config>] [--engine onnxruntime|tfjs] [--seed N]
                 [--set field=value]... [--json]
  metalearn export <checkpoint> --support <class-folder | episode-set.json | support.json>
                 --out model.onnx [--data FILE] [--episode I] [--tolerance T]
  metalearn predict <model.onnx> <input.png | inputs.json | inputs.npy>... [--json]
  metalearn bench [--json] [--workloads a,b] [--iterations N] [--warmup N] [--backend B] [--onnx-threads N]
                 [--torch | --no-torch] [--torch-threads N] [--python PATH] [--torch-ref PATH]
                 [--paired] [--rounds N] [--workers N]
  metalearn --help

run       train, evaluate (mean ± 95% CI), export ONNX, write DIR/{metrics.jsonl, checkpoints/,
          model.onnx, report.html, summary.json}. Ctrl-C stops with a final checkpoint;
          --resume continues from it.
validate  check a pipeline file against the schema (exit 2 with every error on failure)
list      registered learners, datasets and compute backends
eval      accuracy (mean ± 95% CI) of a checkpoint (file, or a run directory: its LATEST) on test
          episodes drawn as run draws them (same seed, same figure); data from the pipeline the
          checkpoint records, or --data; --set replaces a learner config field (checked against
          the learner's schema), e.g. --set evalInnerSteps=16 --set evalLambda=0.5 (iMAML)
export    adapt the checkpoint's learner on a support set (image folder <class>/*.png, episode-set
          file, or JSON {x, y, classes}), export ONNX, check it in onnxruntime against tfjs, then
          write --out atomically (class names kept in the model's metadata)
predict   classify inputs with an exported model in onnxruntime: one line per input
bench     core's engine benchmark, then PyTorch's reference (torch_ref.py) on the same workloads in
          the same invocation when /usr/bin/python3 has torch: ours, torch's median ms, ours/torch
          (one JSON line per workload with --json, a table otherwise); --paired alternates ours and
          PyTorch's workload by workload for --rounds rounds (default 3): ratio = the rounds' median;
          the workers_* rows are the optim learners' FOMAML / MAML meta-batches as run trains them
          (engine onnxruntime, tasks on --workers threads, default: the cores)

exit codes: 0 ok, 1 failure, 2 invalid pipeline, usage or input data, 3 training diverged (NaN loss), 130 interrupted`;

interface Args {
  cmd?: string;
  file?: string;
  /** every positional argument after the command */
  rest: string[];
  out?: string;
  resume: boolean;
  seed?: number;
  plain: boolean;
  help: boolean;
  json: boolean;
  data?: string;
  support?: string;
  engine?: 'onnxruntime' | 'tfjs';
  episodes?: number;
  episode?: number;
  ways?: number;
  shots?: number;
  queries?: number;
  tolerance?: number;
  /** eval: learner config overrides (`--set field=value`, repeatable) */
  set?: Record<string, unknown>;
  /** raw arguments after `bench` (its own options) */
  benchArgs: string[];
}

class UsageError extends Error {}

/** options each command accepts (besides --help) */
const ALLOWED: Record<string, string[]> = {
  run: ['--out', '--resume', '--seed', '--plain'],
  validate: [],
  list: [],
  eval: ['--episodes', '--ways', '--shots', '--queries', '--data', '--engine', '--seed', '--json', '--set'],
  export: ['--support', '--out', '--data', '--episode', '--tolerance'],
  predict: ['--json'],
};

function parseArgs(argv: string[]): Args {
  const a: Args = { resume: false, plain: false, help: false, json: false, rest: [], benchArgs: [] };
  const pos: string[] = [];
  const seen: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i]!;
    if (pos[0] === 'bench') {
      if (s === '--json') a.json = true;
      else if (s === '--help' || s === '-h') a.help = true;
      else a.benchArgs.push(s);
      continue;
    }
    const flag = s.split('=')[0]!;
    const val = (): string => {
      const v = s.includes('=') ? s.slice(s.indexOf('=') + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`option ${flag} needs a value`);
      return v;
    };
    const int = (min: number): number => {
      const v = val();
      if (!/^-?\d+$/.test(v) || Number(v) < min) throw new UsageError(`${flag} must be an integer${min > -Infinity ? ` >= ${min}` : ''}, got '${v}'`);
      return Number(v);
    };
    if (s.startsWith('-') && s !== '-h' && s !== '--help') seen.push(flag === '-o' ? '--out' : flag);
    if (s === '--help' || s === '-h') a.help = true;
    else if (s === '--resume') a.resume = true;
    else if (s === '--plain') a.plain = true;
    else if (s === '--json') a.json = true;
    else if (flag === '--out' || s === '-o') a.out = val();
    else if (flag === '--seed') a.seed = int(-Infinity);
    else if (flag === '--data') a.data = val();
    else if (flag === '--set') {
      const v = val();
      const eq = v.indexOf('=');
      const key = eq > 0 ? v.slice(0, eq) : '';
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || eq === v.length - 1) throw new UsageError(`--set expects field=value (a learner config field, value as JSON or a plain string), got '${v}'`);
      const raw = v.slice(eq + 1);
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        value = raw;
      }
      (a.set ??= {})[key] = value;
    }
    else if (flag === '--support') a.support = val();
    else if (flag === '--episodes') a.episodes = int(1);
    else if (flag === '--episode') a.episode = int(0);
    else if (flag === '--ways') a.ways = int(2);
    else if (flag === '--shots') a.shots = int(1);
    else if (flag === '--queries') a.queries = int(1);
    else if (flag === '--engine') {
      const v = val();
      if (v !== 'onnxruntime' && v !== 'tfjs') throw new UsageError(`--engine must be onnxruntime or tfjs, got '${v}'`);
      a.engine = v;
    } else if (flag === '--tolerance') {
      const v = val();
      if (!(Number(v) >= 0)) throw new UsageError(`--tolerance must be a non-negative number, got '${v}'`);
      a.tolerance = Number(v);
    } else if (s.startsWith('-')) throw new UsageError(`unknown option '${s}'`);
    else pos.push(s);
  }
  a.cmd = pos[0];
  a.file = pos[1];
  a.rest = pos.slice(1);
  const allowed = a.cmd ? ALLOWED[a.cmd] : undefined;
  if (allowed) for (const f of seen) if (!allowed.includes(f)) throw new UsageError(`${a.cmd}: unknown option '${f}'`);
  if (a.cmd !== 'predict' && a.cmd !== 'bench' && pos.length > 2) throw new UsageError(`unexpected argument '${pos[2]}'`);
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
  if ((args.help && args.cmd !== 'bench') || !args.cmd) {
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
        if (e instanceof DataError) {
          // the pipeline is valid but its data is not (missing folder, corrupt file, ...): an input error
          io.stderr(`error: ${e.message}\n`);
          return EXIT.invalid;
        }
        throw e;
      } finally {
        if (signals) {
          process.off('SIGINT', onSigint);
          process.off('SIGTERM', onSigint);
        }
      }
    }
    case 'eval':
    case 'export':
    case 'predict':
    case 'bench':
      try {
        return await toolCommand(args, io);
      } catch (e) {
        if (e instanceof InputError || e instanceof UsageError || e instanceof DataError) {
          io.stderr(`${args.cmd}: ${e.message}\n`);
          return EXIT.invalid;
        }
        if (e instanceof PipelineValidationError) {
          printValidation(io, e);
          return EXIT.invalid;
        }
        throw e;
      }
    default:
      io.stderr(`unknown command '${args.cmd}'\n\n${USAGE}\n`);
      return EXIT.invalid;
  }
}


async function toolCommand(args: Args, io: CliIO): Promise<number> {
  switch (args.cmd) {
    case 'eval': {
      if (!args.file) throw new UsageError('missing <checkpoint> (a checkpoint file or a run directory)');
      const r = await evalCheckpoint(args.file, {
        data: args.data,
        episodes: args.episodes,
        ways: args.ways,
        shots: args.shots,
        queries: args.queries,
        engine: args.engine,
        seed: args.seed,
        set: args.set,
      });
      if (args.json) {
        const { accuracies: _a, ...rest } = r;
        io.stdout(JSON.stringify(rest) + '\n');
      } else {
        io.stdout(`${r.learner} on ${r.dataset} (split ${r.split}): ${r.ways}-way ${r.shots}-shot accuracy ${formatPercentCI(r)} over ${r.n} test episodes (${r.engine}, seed ${r.seed}${r.set ? `, ${Object.entries(r.set).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')}` : ''})${r.accuracyByInstance ? `; by instance ${formatByInstance(r.accuracyByInstance)}` : ''}\n`);
      }
      return EXIT.ok;
    }
    case 'export': {
      if (!args.file) throw new UsageError('missing <checkpoint>');
      if (!args.support) throw new UsageError('missing --support <class folder | episode-set file | support JSON>');
      if (!args.out) throw new UsageError('missing --out <model.onnx>');
      const r = await exportCheckpoint(args.file, { support: args.support, out: args.out, data: args.data, episode: args.episode, tolerance: args.tolerance });
      io.stdout(`${args.out}: ${r.learner} adapted on ${r.supportSize} support examples, ${r.classes.length} classes (${r.classes.join(', ')}); onnxruntime vs tfjs max |Δlogit| = ${r.maxAbsDiff.toExponential(2)}\n`);
      return EXIT.ok;
    }
    case 'predict': {
      const [model, ...inputs] = args.rest;
      if (!model) throw new UsageError('missing <model.onnx>');
      const preds = await predictOnnx(model, inputs);
      for (const p of preds) io.stdout(args.json ? JSON.stringify(p) + '\n' : `${p.input}\t${p.class}\n`);
      return EXIT.ok;
    }
    case 'bench': {
      if (args.help) {
        const usage = BENCH_USAGE.replace(/^usage: bench /, '').replace(BENCH_WORKLOADS.join(','), [...BENCH_WORKLOADS, ...LEARNER_BENCH_WORKLOADS].join(','));
        io.stdout(`metalearn bench [--json] ${usage} [--workers N]\n`);
        return EXIT.ok;
      }
      let opts: BenchCompareOptions;
      // --workers is the app's (its learner rows); the rest are core's bench options
      let workers: number | undefined;
      const rest: string[] = [];
      for (let i = 0; i < args.benchArgs.length; i++) {
        if (args.benchArgs[i] !== '--workers') {
          rest.push(args.benchArgs[i]!);
          continue;
        }
        const v = args.benchArgs[++i];
        workers = Number(v);
        if (v === undefined || !Number.isInteger(workers) || workers < 1) throw new UsageError(`--workers needs a positive integer, got ${JSON.stringify(v)}`);
      }
      try {
        opts = parseBenchArgs(rest);
      } catch (e) {
        throw new UsageError((e as Error).message.replace(/^bench: /, ''));
      }
      // ours first, then torch's reference for the same workloads (same invocation, same machine load)
      const r = await bench({ ...opts, quiet: true, workers });
      io.stdout(args.json ? r.rows.map((row) => JSON.stringify(row) + '\n').join('') : formatBenchTable(r.rows, r.status));
      if (args.json) io.stderr(`bench: ${r.status}\n`);
      return EXIT.ok;
    }
  }
  throw new UsageError(`unknown command '${args.cmd}'`);
}
