/**
 * The PyTorch side of the benchmark: runs the reference scripts with a Python that has torch
 * (`/work/shared/bench/torch_ref.py` for the training workloads, our `bench-ref/torch_eval.py` for the
 * 600-episode evaluation), parses their JSON lines, and pairs them with our rows (ratio = ours / torch).
 * Torch being absent is a normal outcome (figures without a reference), never an error.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchRow } from './index.js';
import { median } from '../metrics.js';
import { TORCH_REF_WORKLOADS } from './workloads.js';

/** One timing printed by a reference script. */
export interface TorchTiming {
  workload: string;
  ms: number;
  threads?: number;
}

/** Our row paired with the PyTorch timing of the same work. */
export interface BenchComparisonRow extends BenchRow {
  /** the reference workload compared against (null: none for this workload) */
  torch_workload: string | null;
  /** PyTorch's median ms for it in this invocation (null: torch not run or no such row) */
  torch_ms: number | null;
  /** ours / torch (above 1: we are slower); null without a torch figure */
  ratio: number | null;
  /** PyTorch intra-op threads (null: torch not run) */
  torch_threads: number | null;
  /** why there is no torch figure, when there is none */
  torch_note?: string;
  /** true: PyTorch ran right after each of our rounds (`--paired`), ratio = median of the rounds' ratios */
  paired?: boolean;
}

export interface TorchStatus {
  available: boolean;
  python: string;
  version?: string;
  /** why torch was not run (when it was not) */
  reason?: string;
}

/**
 * The PyTorch workload each of ours is compared against. The onnxruntime forward is compared with
 * PyTorch's eager forward of the same batch; the evaluation with our torch_eval.py (bench-ref/).
 */
export const TORCH_COUNTERPART: Readonly<Record<string, string>> = {
  conv4_fwd_batch80: 'conv4_fwd_batch80',
  conv4_fwd_bwd_batch80: 'conv4_fwd_bwd_batch80',
  protonet_5w1s_episode: 'protonet_5w1s_episode',
  fomaml_5w1s_metabatch4_1step: 'fomaml_5w1s_metabatch4_1step',
  maml2_5w1s_metabatch4_1step: 'maml2_5w1s_metabatch4_1step',
  maml2_5w1s_metabatch4_5step: 'maml2_5w1s_metabatch4_5step',
  graph_conv4_fwd_bwd_batch80: 'conv4_fwd_bwd_batch80',
  graph_protonet_5w1s_episode: 'protonet_5w1s_episode',
  graph_fomaml_5w1s_metabatch4_1step: 'fomaml_5w1s_metabatch4_1step',
  graph_maml2_5w1s_metabatch4_1step: 'maml2_5w1s_metabatch4_1step',
  graph_maml2_5w1s_metabatch4_5step: 'maml2_5w1s_metabatch4_5step',
  onnx_conv4_fwd_batch80: 'conv4_fwd_batch80',
  protonet_eval_5w1s_600ep_onnx: 'protonet_eval_5w1s_600ep',
};

/** Reference workloads printed by torch_ref.py (the rest come from bench-ref/torch_eval.py). */
const TORCH_REF = new Set<string>(TORCH_REF_WORKLOADS);

/**
 * Parse the JSON lines of a reference script: `{"workload": ..., "ms": ..., "threads": ...}` per line.
 * Lines that are not JSON objects (warnings) are skipped; a JSON line without a workload name or a
 * positive `ms` is an error naming its line.
 */
export function parseTorchOutput(text: string, source = 'torch reference'): TorchTiming[] {
  const out: TorchTiming[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line.startsWith('{')) return;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new Error(`${source}: line ${i + 1} is not valid JSON (${(e as Error).message}): ${line.slice(0, 120)}`);
    }
    const r = o as Record<string, unknown>;
    if (typeof r['workload'] !== 'string' || !r['workload']) throw new Error(`${source}: line ${i + 1} has no "workload" name: ${line.slice(0, 120)}`);
    const ms = r['ms'];
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) throw new Error(`${source}: line ${i + 1} ("${r['workload']}") has no positive "ms": ${line.slice(0, 120)}`);
    const t: TorchTiming = { workload: r['workload'], ms };
    if (typeof r['threads'] === 'number') t.threads = r['threads'];
    out.push(t);
  });
  return out;
}

/** ours / torch, rounded to 2 decimals (3 significant digits below 0.1). */
export function benchRatio(ours: number, torch: number): number {
  const r = ours / torch;
  return r >= 0.1 ? Math.round(r * 100) / 100 : Number(r.toPrecision(3));
}

/**
 * Pair our rows with torch timings (by `counterparts`, default {@link TORCH_COUNTERPART}); `note` explains missing figures.
 * A row whose rounds carry PyTorch's figure of the same moment (`bench --paired`) uses those instead:
 * torch_ms is the median of the rounds', the ratio the median of the rounds' ours / torch.
 */
export function compareWithTorch(
  rows: readonly BenchRow[],
  torch: readonly TorchTiming[] | null,
  threads: number | null,
  note?: string,
  counterparts: Readonly<Record<string, string>> = TORCH_COUNTERPART,
): BenchComparisonRow[] {
  const byName = new Map((torch ?? []).map((t) => [t.workload, t]));
  return rows.map((r) => {
    const tw = counterparts[r.workload] ?? null;
    const paired = r.rounds?.filter((x): x is { ms: number; torch_ms: number } => x.torch_ms !== null) ?? [];
    if (tw && paired.length && paired.length === r.rounds!.length) {
      return {
        ...r,
        torch_workload: tw,
        torch_ms: Math.round(median(paired.map((x) => x.torch_ms)) * 100) / 100,
        ratio: benchRatio(median(paired.map((x) => x.ms / x.torch_ms)), 1),
        torch_threads: threads,
        paired: true,
      };
    }
    const t = tw ? byName.get(tw) : undefined;
    const row: BenchComparisonRow = {
      ...r,
      torch_workload: tw,
      torch_ms: t ? t.ms : null,
      ratio: t ? benchRatio(r.ms, t.ms) : null,
      torch_threads: t ? (t.threads ?? threads) : null,
    };
    if (!t) row.torch_note = note ?? (tw ? `the torch run printed no '${tw}'` : 'no PyTorch counterpart');
    return row;
  });
}

const HERE = dirname(fileURLToPath(import.meta.url));

function ancestors(dir: string): string[] {
  const out: string[] = [];
  let d = resolve(dir);
  for (;;) {
    out.push(d);
    const p = dirname(d);
    if (p === d) return out;
    d = p;
  }
}

/** torch_ref.py: `explicit`, env METALEARN_TORCH_REF, else `shared/bench/torch_ref.py` beside an ancestor of this module or of the cwd. */
export function findTorchRef(explicit?: string): string | null {
  if (explicit) return existsSync(explicit) ? resolve(explicit) : null;
  const env = process.env['METALEARN_TORCH_REF'];
  if (env) return existsSync(env) ? resolve(env) : null;
  for (const d of [...ancestors(HERE), ...ancestors(process.cwd())]) {
    const p = join(d, 'shared', 'bench', 'torch_ref.py');
    if (existsSync(p)) return p;
  }
  return null;
}

/** Our evaluation reference (packages/core/bench-ref/torch_eval.py; same depth from src/ and dist/). */
export function torchEvalScript(): string {
  return resolve(HERE, '..', '..', 'bench-ref', 'torch_eval.py');
}

/** Our driver serving torch_ref.py's workloads one at a time (bench-ref/torch_paired.py). */
export function torchPairedScript(): string {
  return resolve(HERE, '..', '..', 'bench-ref', 'torch_paired.py');
}

/**
 * One Python process that has run torch_ref.py's definitions (not its loop) and times one of its
 * workloads per request with torch_ref.py's own `timeit` (`bench --paired`: PyTorch measured right
 * after each of our rounds, so both see the same machine state).
 */
export class TorchPairedRunner {
  private readonly pending: ((line: string | null) => void)[] = [];
  private readonly queued: string[] = [];
  private closed = false;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly timeoutMs: number,
    readonly label: string,
  ) {
    createInterface({ input: child.stdout }).on('line', (l) => {
      const w = this.pending.shift();
      if (w) w(l);
      else this.queued.push(l);
    });
    child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    child.on('close', () => {
      this.closed = true;
      for (const w of this.pending.splice(0)) w(null);
    });
  }

  /** workload names torch_ref.py defines */
  workloads: string[] = [];

  /** Start the driver on `torchRef`; rejects with the driver's reason when it cannot serve. */
  static async start(python: string, torchRef: string, threads: number, timeoutMs: number, script = torchPairedScript()): Promise<TorchPairedRunner> {
    const child = spawn(python, [script, torchRef, String(threads)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const r = new TorchPairedRunner(child, timeoutMs, torchRef);
    const spawnError = new Promise<string>((res) => child.on('error', (e) => res(`${python} could not be run (${(e as NodeJS.ErrnoException).code ?? e.message})`)));
    const first = await Promise.race([r.next(), spawnError]);
    const o = typeof first === 'string' ? r.parse(first) : null;
    if (!o || o['ready'] !== true || !Array.isArray(o['workloads'])) {
      r.close();
      const why = o && typeof o['error'] === 'string' ? o['error'] : typeof first === 'string' && !first.startsWith('{') ? first : r.lastError();
      throw new Error(`torch_paired.py on ${torchRef}: ${why}`);
    }
    r.workloads = (o['workloads'] as unknown[]).map(String);
    return r;
  }

  /** PyTorch's median ms for `workload` over `iterations` (after `warmup`), measured now. */
  async time(workload: string, iterations: number, warmup: number): Promise<number> {
    if (this.closed) throw new Error(`torch_paired.py on ${this.label} has exited: ${this.lastError()}`);
    this.child.stdin.write(`${workload} ${iterations} ${warmup}\n`);
    const line = await this.next();
    const o = line === null ? null : this.parse(line);
    if (!o) throw new Error(`torch_paired.py on ${this.label}: no answer for '${workload}' (${line === null ? this.lastError() : `got ${JSON.stringify(line.slice(0, 120))}`})`);
    if (typeof o['error'] === 'string') throw new Error(`torch_paired.py on ${this.label}: ${o['error']}`);
    const t = parseTorchOutput(line!, 'torch_paired.py')[0];
    if (!t || t.workload !== workload) throw new Error(`torch_paired.py on ${this.label}: asked for '${workload}', got ${JSON.stringify(line!.slice(0, 120))}`);
    return t.ms;
  }

  close(): void {
    if (!this.closed) {
      this.child.stdin.end();
      this.child.kill();
    }
  }

  private lastError(): string {
    return this.stderr.trim().split('\n').pop() || 'it exited';
  }

  private parse(line: string): Record<string, unknown> | null {
    try {
      const o = JSON.parse(line) as unknown;
      return o && typeof o === 'object' ? (o as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }

  private next(): Promise<string | null> {
    const q = this.queued.shift();
    if (q !== undefined) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((res, rej) => {
      const timer = setTimeout(() => {
        const i = this.pending.indexOf(done);
        if (i >= 0) this.pending.splice(i, 1);
        this.close();
        rej(new Error(`torch_paired.py on ${this.label}: no answer within ${Math.round(this.timeoutMs / 1000)} s`));
      }, this.timeoutMs);
      const done = (l: string | null) => {
        clearTimeout(timer);
        res(l);
      };
      this.pending.push(done);
    });
  }
}

/** Whether `python` can import torch (and its version). */
export function probeTorch(python: string): TorchStatus {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) return { available: false, python, reason: `${python} could not be run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})` };
  if (r.status !== 0) {
    const last = (r.stderr || '').trim().split('\n').pop() ?? '';
    return { available: false, python, reason: `${python} cannot import torch${last ? ` (${last})` : ''}` };
  }
  return { available: true, python, version: r.stdout.trim() };
}

export interface TorchRunOptions {
  python: string;
  threads: number;
  /** torch_ref.py path (null: not found) */
  torchRef: string | null;
  /** our workloads measured; decides which reference scripts run */
  workloads: readonly string[];
  /** iterations / warm-up for torch_eval.py (torch_ref.py has its own: 10 and 2) */
  evalIterations: number;
  evalWarmup: number;
  timeoutMs: number;
  /** our workload → PyTorch's (default {@link TORCH_COUNTERPART}) */
  counterparts?: Readonly<Record<string, string>>;
}

/** Run the reference scripts needed for `workloads`; timings plus notes on what could not run. */
export function runTorchReference(o: TorchRunOptions): { timings: TorchTiming[]; notes: string[] } {
  const timings: TorchTiming[] = [];
  const notes: string[] = [];
  const cp = o.counterparts ?? TORCH_COUNTERPART;
  const wanted = new Set(o.workloads.map((w) => cp[w]).filter((w): w is string => !!w));
  const run = (script: string, args: string[], label: string) => {
    const r = spawnSync(o.python, [script, ...args], { encoding: 'utf8', timeout: o.timeoutMs, maxBuffer: 16 << 20 });
    if (r.error || r.status !== 0) {
      const why = r.error ? r.error.message : `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}: ${(r.stderr || '').trim().split('\n').pop() ?? ''}`;
      notes.push(`${label} failed: ${why}`);
      return;
    }
    try {
      timings.push(...parseTorchOutput(r.stdout, label));
    } catch (e) {
      notes.push((e as Error).message);
    }
  };
  if ([...wanted].some((w) => TORCH_REF.has(w))) {
    if (o.torchRef) run(o.torchRef, [String(o.threads)], o.torchRef);
    else notes.push('torch_ref.py not found (set --torch-ref or METALEARN_TORCH_REF)');
  }
  if (wanted.has('protonet_eval_5w1s_600ep')) {
    const script = torchEvalScript();
    if (existsSync(script)) run(script, [String(o.threads), String(o.evalIterations), String(o.evalWarmup)], 'bench-ref/torch_eval.py');
    else notes.push(`${script} is missing`);
  }
  return { timings, notes };
}

/** The human table: ours, PyTorch's, ratio; a closing line says how torch ran (or why it did not). */
export function formatBenchTable(rows: readonly BenchComparisonRow[], status: string): string {
  const ww = Math.max(32, ...rows.map((r) => r.workload.length));
  const bw = Math.max(12, ...rows.map((r) => r.backend.length));
  const head = `${'workload'.padEnd(ww)} ${'backend'.padEnd(bw)} ${'ours ms'.padStart(10)} ${'torch ms'.padStart(10)} ${'ours/torch'.padStart(10)}`;
  const lines = rows.map(
    (r) =>
      `${r.workload.padEnd(ww)} ${r.backend.padEnd(bw)} ${r.ms.toFixed(2).padStart(10)} ${(r.torch_ms === null ? '-' : r.torch_ms.toFixed(2)).padStart(10)} ${(r.ratio === null ? '-' : r.ratio.toFixed(2)).padStart(10)}`,
  );
  return [head, ...lines, status].join('\n') + '\n';
}
