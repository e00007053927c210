/** The benchmark module: argument parsing and one real (small) measurement. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BENCH_WORKLOADS, benchRatio, compareWithTorch, formatBenchTable, parseBenchArgs, parseTorchOutput, probeTorch, runBench, torchCounterparts, TorchPairedRunner } from '../src/bench/index.js';

describe('bench', () => {
  it('parses its command line and rejects bad input clearly', () => {
    expect(parseBenchArgs(['--workloads', 'conv4_fwd_batch80,protonet_5w1s_episode', '--iterations', '3', '--warmup', '0', '--backend', 'wasm'])).toMatchObject({
      workloads: ['conv4_fwd_batch80', 'protonet_5w1s_episode'],
      iterations: 3,
      warmup: 0,
      backend: 'wasm',
    });
    expect(() => parseBenchArgs(['--iterations', 'x'])).toThrow(/--iterations needs an integer/);
    expect(() => parseBenchArgs(['--frobnicate'])).toThrow(/unknown argument '--frobnicate'/);
  });

  it('lists the torch_ref.py workloads and refuses unknown ones', async () => {
    for (const w of ['conv4_fwd_batch80', 'conv4_fwd_bwd_batch80', 'protonet_5w1s_episode', 'fomaml_5w1s_metabatch4_1step', 'maml2_5w1s_metabatch4_1step', 'maml2_5w1s_metabatch4_5step']) {
      expect(BENCH_WORKLOADS).toContain(w);
    }
    await expect(runBench({ workloads: ['nope'] })).rejects.toThrow(/unknown workload 'nope'/);
  });

  it('measures the Conv-4 forward (batch 80) on wasm and reports {workload, backend, ms}', async () => {
    const seen: unknown[] = [];
    const rows = await runBench({ workloads: ['conv4_fwd_batch80'], iterations: 1, warmup: 0, backend: 'wasm', onRow: (r) => seen.push(r) });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ workload: 'conv4_fwd_batch80', backend: 'wasm' });
    expect(Object.keys(rows[0]!).sort()).toEqual(['backend', 'ms', 'workload']);
    expect(rows[0]!.ms).toBeGreaterThan(0);
    expect(seen).toEqual(rows);
  });
});

describe('bench: the PyTorch comparison (no python needed)', () => {
  // what torch_ref.py prints (one JSON line per workload), with a warning line mixed in
  const FAKE = [
    'UserWarning: something about threads',
    '{"workload": "conv4_fwd_batch80", "threads": 2, "ms": 20.0}',
    '{"workload": "conv4_fwd_bwd_batch80", "threads": 2, "ms": 50.5}',
    '{"workload": "protonet_5w1s_episode", "threads": 2, "ms": 40.0}',
    '{"workload": "maml2_5w1s_metabatch4_1step", "threads": 2, "ms": 400.0}',
    '',
  ].join('\n');

  it('parses the reference lines, skipping non-JSON lines', () => {
    const t = parseTorchOutput(FAKE);
    expect(t).toEqual([
      { workload: 'conv4_fwd_batch80', ms: 20, threads: 2 },
      { workload: 'conv4_fwd_bwd_batch80', ms: 50.5, threads: 2 },
      { workload: 'protonet_5w1s_episode', ms: 40, threads: 2 },
      { workload: 'maml2_5w1s_metabatch4_1step', ms: 400, threads: 2 },
    ]);
  });

  it('rejects malformed JSON lines naming the line', () => {
    expect(() => parseTorchOutput('ok\n{"workload": "x", "ms": "fast"}', 'torch_ref.py')).toThrow(/torch_ref.py: line 2 \("x"\) has no positive "ms"/);
    expect(() => parseTorchOutput('{"ms": 3}')).toThrow(/line 1 has no "workload"/);
    expect(() => parseTorchOutput('{"workload": "x", "ms": 3')).toThrow(/line 1 is not valid JSON/);
  });

  it('pairs our rows with torch (ratio = ours / torch), the onnx forward with the eager forward', () => {
    const ours = [
      { workload: 'conv4_fwd_batch80', backend: 'wasm', ms: 90 },
      { workload: 'protonet_5w1s_episode', backend: 'wasm', ms: 1000 },
      { workload: 'onnx_conv4_fwd_batch80', backend: 'onnxruntime', ms: 5 },
      { workload: 'maml2_5w1s_metabatch4_5step', backend: 'wasm', ms: 7000 },
    ];
    const rows = compareWithTorch(ours, parseTorchOutput(FAKE), 2);
    expect(rows[0]).toMatchObject({ workload: 'conv4_fwd_batch80', ms: 90, torch_workload: 'conv4_fwd_batch80', torch_ms: 20, ratio: 4.5, torch_threads: 2 });
    expect(rows[1]).toMatchObject({ torch_ms: 40, ratio: 25 });
    expect(rows[2]).toMatchObject({ workload: 'onnx_conv4_fwd_batch80', torch_workload: 'conv4_fwd_batch80', torch_ms: 20, ratio: 0.25 });
    // torch printed no such row: null figures and a note saying so
    expect(rows[3]).toMatchObject({ torch_ms: null, ratio: null, torch_note: "the torch run printed no 'maml2_5w1s_metabatch4_5step'" });
    expect(benchRatio(1, 300)).toBe(0.00333);
    expect(benchRatio(2, 3)).toBe(0.67);
  });

  it('without torch: our figures, null torch columns, the reason in every row and the table', () => {
    const rows = compareWithTorch([{ workload: 'conv4_fwd_batch80', backend: 'wasm', ms: 90 }], null, null, 'torch unavailable: /nope could not be run (ENOENT)');
    expect(rows[0]).toMatchObject({ ms: 90, torch_ms: null, ratio: null, torch_threads: null, torch_note: 'torch unavailable: /nope could not be run (ENOENT)' });
    const table = formatBenchTable(rows, 'torch unavailable (x): our figures only');
    expect(table).toMatch(/workload\s+backend\s+ours ms\s+torch ms\s+ours\/torch/);
    expect(table).toMatch(/conv4_fwd_batch80\s+wasm\s+90\.00\s+-\s+-/);
    expect(table.trim().split('\n').pop()).toBe('torch unavailable (x): our figures only');
  });

  it('a python that cannot be run is reported, not thrown', () => {
    const s = probeTorch('/nonexistent/python3');
    expect(s.available).toBe(false);
    expect(s.reason).toMatch(/could not be run/);
  });

  it('parses the torch options', () => {
    expect(parseBenchArgs(['--torch', '--torch-threads', '1', '--python', '/usr/bin/python3', '--torch-ref', 'x.py', '--torch-timeout', '60'])).toMatchObject({
      torch: 'on',
      torchThreads: 1,
      python: '/usr/bin/python3',
      torchRef: 'x.py',
      torchTimeoutMs: 60000,
    });
    expect(parseBenchArgs(['--no-torch'])).toMatchObject({ torch: 'off' });
    expect(() => parseBenchArgs(['--torch-threads', '0'])).toThrow(/--torch-threads must be >= 1/);
  });
});

describe('bench --paired: PyTorch right after each of our rounds', () => {
  it('parses --paired and --rounds', () => {
    expect(parseBenchArgs(['--paired', '--rounds', '4'])).toMatchObject({ paired: true, rounds: 4 });
    expect(() => parseBenchArgs(['--rounds', '0'])).toThrow(/--rounds must be >= 1/);
  });

  it('runs each workload for every round and asks for the paired figure after each', async () => {
    const asked: string[] = [];
    const rows = await runBench({
      workloads: ['conv4_fwd_batch80'],
      iterations: 1,
      warmup: 0,
      backend: 'wasm',
      rounds: 2,
      pair: async (w, n, warm) => {
        asked.push(`${w} ${n} ${warm}`);
        return 10 * asked.length;
      },
    });
    expect(asked).toEqual(['conv4_fwd_batch80 1 0', 'conv4_fwd_batch80 1 0']);
    expect(rows[0]!.rounds).toHaveLength(2);
    expect(rows[0]!.rounds!.map((r) => r.torch_ms)).toEqual([10, 20]);
    expect(rows[0]!.ms).toBeGreaterThan(0);
  });

  it('runs a caller\'s extra workloads (set up untimed, stepped, closed) and pairs them with their torch counterpart', async () => {
    const log: string[] = [];
    const extra = [
      {
        workload: 'my_fomaml',
        backend: 'elsewhere',
        torch: 'fomaml_5w1s_metabatch4_1step',
        async setup() {
          log.push('setup');
          return { step: () => void log.push('step'), close: () => void log.push('close') };
        },
      },
    ];
    const asked: string[] = [];
    const rows = await runBench({ workloads: ['my_fomaml'], iterations: 2, warmup: 1, extra, pair: async (w) => (asked.push(w), 5) });
    expect(log).toEqual(['setup', 'step', 'step', 'step', 'close']);
    expect(asked).toEqual(['my_fomaml']);
    expect(rows).toEqual([expect.objectContaining({ workload: 'my_fomaml', backend: 'elsewhere' })]);
    const cmp = compareWithTorch(rows, parseTorchOutput('{"workload": "fomaml_5w1s_metabatch4_1step", "ms": 4}'), 2, undefined, torchCounterparts(extra));
    expect(cmp[0]).toMatchObject({ torch_workload: 'fomaml_5w1s_metabatch4_1step', paired: true, torch_ms: 5 });
    const unpaired = compareWithTorch([{ workload: 'my_fomaml', backend: 'elsewhere', ms: 2 }], parseTorchOutput('{"workload": "fomaml_5w1s_metabatch4_1step", "ms": 4}'), 2, undefined, torchCounterparts(extra));
    expect(unpaired[0]).toMatchObject({ torch_ms: 4, ratio: 0.5 });
    // a failing step still closes; names are checked against core's and the extras'
    const closed: string[] = [];
    const bad = [{ ...extra[0]!, async setup() { return { step: () => { throw new Error('boom'); }, close: () => void closed.push('x') }; } }];
    await expect(runBench({ workloads: ['my_fomaml'], iterations: 1, warmup: 0, extra: bad })).rejects.toThrow('boom');
    expect(closed).toEqual(['x']);
    await expect(runBench({ workloads: ['nope'], extra })).rejects.toThrow(/unknown workload 'nope' \(known: .*my_fomaml/);
    await expect(runBench({ extra: [{ ...extra[0]!, workload: 'conv4_fwd_batch80' }] })).rejects.toThrow(/extra workload 'conv4_fwd_batch80' has the name of a core workload/);
  });

  it('takes the ratio as the median of the rounds\' ratios', () => {
    const rows = compareWithTorch(
      [
        {
          workload: 'graph_conv4_fwd_bwd_batch80',
          backend: 'onnxruntime-graph',
          ms: 60,
          rounds: [
            { ms: 60, torch_ms: 80 },
            { ms: 90, torch_ms: 60 },
            { ms: 55, torch_ms: 70 },
          ],
        },
      ],
      null,
      2,
    );
    // ratios 0.75, 1.5, 0.786 → median 0.786; PyTorch's median 70
    expect(rows[0]).toMatchObject({ torch_workload: 'conv4_fwd_bwd_batch80', torch_ms: 70, ratio: 0.79, paired: true, torch_threads: 2 });
  });

  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'print(1)']).status === 0);
  it.skipIf(!python)('serves torch_ref.py\'s own workloads and timeit one at a time (a fake torch_ref.py; skipped without python3)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paired-'));
    try {
      // the shape of torch_ref.py: definitions, timeit, then the final loop over (name, fn) pairs
      const ref = join(dir, 'torch_ref.py');
      writeFileSync(
        ref,
        [
          'import sys, json',
          'threads = int(sys.argv[1])',
          'calls = []',
          'def timeit(fn, n=10, warm=2):',
          '    return fn() * 1000 + n * 10 + warm',
          'def fwd(): return 1',
          'for name, fn in [("conv4_fwd_batch80", fwd),',
          '                 ("conv4_fwd_bwd_batch80", lambda: 2 * threads)]:',
          '    print(json.dumps({"workload": name, "ms": timeit(fn)}))',
          '',
        ].join('\n'),
      );
      const r = await TorchPairedRunner.start(python!, ref, 3, 20_000);
      try {
        expect(r.workloads).toEqual(['conv4_fwd_batch80', 'conv4_fwd_bwd_batch80']);
        expect(await r.time('conv4_fwd_batch80', 4, 1)).toBe(1041);
        expect(await r.time('conv4_fwd_bwd_batch80', 2, 0)).toBe(6020);
        await expect(r.time('nope', 1, 0)).rejects.toThrow(/bad request 'nope 1 0'.*names: conv4_fwd_batch80, conv4_fwd_bwd_batch80/);
        await expect(r.time('conv4_fwd_batch80', 0, 1)).rejects.toThrow(/bad request 'conv4_fwd_batch80 0 1'/);
        expect(await r.time('conv4_fwd_batch80', 1, 0)).toBe(1010);
      } finally {
        r.close();
      }
      const bad = join(dir, 'no_loop.py');
      writeFileSync(bad, 'def timeit(fn, n, warm): return 1\n');
      await expect(TorchPairedRunner.start(python!, bad, 2, 20_000)).rejects.toThrow(/no final 'for name, fn in \[\.\.\.\]' loop/);
      await expect(TorchPairedRunner.start('/nonexistent/python3', ref, 2, 20_000)).rejects.toThrow(/could not be run/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
