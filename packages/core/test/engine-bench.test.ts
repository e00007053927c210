/** The benchmark module: argument parsing and one real (small) measurement. */
import { describe, expect, it } from 'vitest';
import { BENCH_WORKLOADS, benchRatio, compareWithTorch, formatBenchTable, parseBenchArgs, parseTorchOutput, probeTorch, runBench } from '../src/bench/index.js';

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
