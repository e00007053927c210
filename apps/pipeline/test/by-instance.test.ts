import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evalCheckpoint, main } from '../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-by-instance-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const pipeline = (learner: string[], evalEpisodes: number): string =>
  [
    'plugins: ["@metalearn/memory"]',
    'data:',
    '  dataset: synthetic-glyphs',
    '  options: { numClasses: 30, itemsPerClass: 8, size: 8 }',
    'episodes: { ways: 3, shots: 1, queries: 3 }',
    'learner:',
    ...learner,
    `train: { iterations: 2, metaBatch: 2, seed: 3, checkpointEvery: 2, valEvery: 0, logEvery: 1 }`,
    `evaluate: { episodes: ${evalEpisodes}, ways: 3, shots: 2, queries: 4, engine: tfjs }`,
    'export: { onnx: model.onnx, parity: true }',
    '',
  ].join('\n');

function run(name: string, text: string): Promise<{ code: number; out: string; err: string }> {
  const f = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(f, text);
  const out = path.join(tmp, `${name}-out`);
  let err = '';
  return main(['run', f, '--out', out], { stdout: () => {}, stderr: (s) => void (err += s), progress: null, signals: false }).then((code) => ({ code, out, err }));
}

describe('accuracy by instance for sequence learners (Santoro table)', () => {
  it('MANN: summary, headline, metrics.jsonl and `metalearn eval` give accuracy at every presentation 1..shots+queries over the test episodes', async () => {
    const r = await run('mann', pipeline(['  id: mann', '  classes: 3', '  controllerSize: 16', '  memorySlots: 8', '  memoryWidth: 6', '  readHeads: 1'], 23));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(fs.readFileSync(path.join(r.out, 'summary.json'), 'utf8'));
    // 2 shots + 4 queries: every class is presented 6 times per episode; 23 episodes x 3 classes per instance
    expect(Object.keys(s.accuracyByInstance)).toEqual(['inst1', 'inst2', 'inst3', 'inst4', 'inst5', 'inst6']);
    for (const v of Object.values(s.accuracyByInstance) as { mean: number; ci95: number; n: number }[]) {
      expect(v.n).toBe(23 * 3);
      expect(v.mean).toBeGreaterThanOrEqual(0);
      expect(v.mean).toBeLessThanOrEqual(1);
      expect(v.ci95).toBeCloseTo(1.96 * Math.sqrt((v.mean * (1 - v.mean)) / v.n), 5);
    }
    expect(s.headline).toMatch(/by instance 1: \d+\.\d %, 2: \d+\.\d %, 5: \d+\.\d %$/);
    const lines = fs.readFileSync(path.join(r.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const inst = lines.filter((l) => l.type === 'test-by-instance');
    expect(inst).toHaveLength(1);
    expect(inst[0]).toMatchObject({ episodes: 23, acc_inst1: s.accuracyByInstance.inst1.mean, acc_inst6: s.accuracyByInstance.inst6.mean });
    // `metalearn eval` on the run's checkpoint: the same episodes and sequence orders, the same figures
    const e = await evalCheckpoint(r.out, { engine: 'tfjs' });
    expect(e.accuracyByInstance).toEqual(s.accuracyByInstance);
    // fewer presentations per class: only instances 1..3
    const e3 = await evalCheckpoint(r.out, { engine: 'tfjs', shots: 1, queries: 2, episodes: 5 });
    expect(Object.keys(e3.accuracyByInstance!)).toEqual(['inst1', 'inst2', 'inst3']);
    expect(e3.accuracyByInstance!['inst3']!.n).toBe(5 * 3);
  });
});
