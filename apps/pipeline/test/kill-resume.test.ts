/**
 * Reliability: `metalearn run` (the built binary, as a child process) is SIGKILLed in the middle of
 * meta-training, after its first checkpoint; `--resume` then finishes the run. Every checkpoint
 * left on disk must load, at most one checkpoint interval may be lost, and the finished run must
 * equal an uninterrupted run with the same seed (metrics.jsonl byte for byte, test accuracy).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '@metalearn/core';
import { ensureBuilt, repoRoot } from './helpers/build.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-kill-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const cli = path.join(repoRoot, 'apps', 'pipeline', 'dist', 'cli.js');
const EVERY = 4;
const ITERS = 100;

beforeAll(() => {
  ensureBuilt();
}, 180_000);

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: tmp, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('SIGKILL during meta-training, then --resume', () => {
  it('leaves only loadable checkpoints, loses at most one interval, and resumes to the uninterrupted result', async () => {
    const f = path.join(tmp, 'kill.yaml');
    fs.writeFileSync(
      f,
      [
        'data:\n  dataset: synthetic-glyphs\n  options: { numClasses: 40, itemsPerClass: 6, size: 16 }',
        'episodes: { ways: 5, shots: 1, queries: 2 }',
        'learner:\n  id: protonet\n  backbone: { type: conv4, filters: 8, blocks: 3 }',
        `train: { iterations: ${ITERS}, metaBatch: 1, seed: 5, checkpointEvery: ${EVERY}, valEvery: 20, valEpisodes: 2, logEvery: 1 }`,
        'evaluate: { episodes: 6, ways: 5, shots: 1, queries: 2, engine: tfjs }',
        'export: { onnx: false }',
        '',
      ].join('\n'),
    );
    // reference: uninterrupted
    const ref = path.join(tmp, 'ref');
    const r0 = runCli(['run', f, '--out', ref, '--plain']);
    expect(r0.status, r0.stderr).toBe(0);
    const refMetrics = fs.readFileSync(path.join(ref, 'metrics.jsonl'), 'utf8');
    const refSummary = JSON.parse(fs.readFileSync(path.join(ref, 'summary.json'), 'utf8'));

    // killed run: SIGKILL half-way between two checkpoints
    const out = path.join(tmp, 'killed');
    const ckDir = path.join(out, 'checkpoints');
    const child = spawn(process.execPath, [cli, 'run', f, '--out', out, '--plain'], { cwd: tmp, stdio: 'ignore' });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
    let killedAt = -1;
    const t0 = Date.now();
    while (Date.now() - t0 < 45_000 && child.exitCode === null) {
      // kill between checkpoints: after the second one, half-way into an interval
      const latest = path.join(ckDir, 'LATEST');
      const metrics = path.join(out, 'metrics.jsonl');
      const logged = fs.existsSync(metrics) ? fs.readFileSync(metrics, 'utf8').split('\n').filter((l) => l.includes('"type":"train"')).length : 0;
      if (fs.existsSync(latest) && logged > 2 * EVERY && logged % EVERY === EVERY / 2) {
        child.kill('SIGKILL');
        killedAt = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const ex = await exited;
    expect(killedAt, 'the run finished before it could be killed').toBeGreaterThan(0);
    expect(ex.signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(out, 'summary.json'))).toBe(false);

    // every checkpoint on disk loads; LATEST names one of them
    const cks = fs.readdirSync(ckDir).filter((n) => /^iter-\d+\.json$/.test(n));
    expect(cks.length).toBeGreaterThan(0);
    for (const n of cks) expect(() => loadCheckpoint(path.join(ckDir, n)), n).not.toThrow();
    const latest = fs.readFileSync(path.join(ckDir, 'LATEST'), 'utf8').trim();
    expect(cks).toContain(latest);
    const ckIter = loadCheckpoint(path.join(ckDir, latest)).progress!['iterations']!;
    expect(ckIter).toBeGreaterThanOrEqual(EVERY);
    expect(ckIter).toBeLessThan(ITERS);
    // the log (one train line per iteration) shows how far training got: at most one interval lost
    const done = fs
      .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { type: string; iteration: number })
      .filter((r) => r.type === 'train')
      .reduce((m, r) => Math.max(m, r.iteration), 0);
    expect(done - ckIter).toBeLessThanOrEqual(EVERY);
    console.info(`killed after iteration ${done}; resuming from checkpoint at iteration ${ckIter}`);

    // resume to the end: same log and figures as the uninterrupted run
    const r1 = runCli(['run', f, '--out', out, '--resume', '--plain']);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toContain(`resuming from`);
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(refMetrics);
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(s.accuracy).toBe(refSummary.accuracy);
    expect(s.ci95).toBe(refSummary.ci95);
    expect(s.iterations).toBe(ITERS);
  }, 90_000);
});
