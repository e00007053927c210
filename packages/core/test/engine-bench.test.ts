/** The benchmark module: argument parsing and one real (small) measurement. */
import { describe, expect, it } from 'vitest';
import { BENCH_WORKLOADS, parseBenchArgs, runBench } from '../src/bench/index.js';

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
