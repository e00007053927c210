import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Subject } from 'rxjs';
import { afterAll, describe, expect, it } from 'vitest';
import { main, runPipeline, RunInterrupted, loadPipeline, PipelineValidationError } from '../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(): { io: Parameters<typeof main>[1]; out: () => string; err: () => string } {
  let o = '';
  let e = '';
  return { io: { stdout: (s) => void (o += s), stderr: (s) => void (e += s), progress: null, signals: false }, out: () => o, err: () => e };
}

/** A pipeline small enough to run in seconds on 2 cores. */
function tinyPipeline(over: Record<string, string> = {}): string {
  const y = {
    data: 'data:\n  dataset: synthetic-glyphs\n  options: { numClasses: 60, itemsPerClass: 8, size: 16 }\n',
    episodes: 'episodes: { ways: 5, shots: 1, queries: 2 }\n',
    learner: 'learner:\n  id: protonet\n  backbone: { type: conv4, filters: 8, blocks: 3 }\n',
    train: 'train: { iterations: 6, metaBatch: 2, seed: 7, checkpointEvery: 2, valEvery: 3, valEpisodes: 4, logEvery: 2 }\n',
    evaluate: 'evaluate: { episodes: 12, ways: 5, shots: 1, queries: 3, engine: onnxruntime }\n',
    export: 'export: { onnx: model.onnx, parity: true }\n',
    ...over,
  };
  return Object.values(y).join('');
}

function writeFile(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

describe('metalearn validate', () => {
  it('rejects a bad file: every error with its JSON path, line and allowed values; exit 2; nothing written', async () => {
    const bad = writeFile(
      'bad.yaml',
      [
        'data:',
        '  dataset: synthetic-glyphs',
        '  options: { numClasses: 0 }',
        'episodes: { ways: 1, shots: 1 }',
        'learner:',
        '  id: protonet',
        '  backbone: { type: resnet99 }',
        '  distanse: cosine',
        'train: { iterations: -3, metaBatch: 2, sed: 1 }',
        'evaluate: { engine: gpu }',
        'export: { onnx: 3 }',
      ].join('\n'),
    );
    const before = fs.readdirSync(tmp).sort();
    const c = capture();
    const code = await main(['validate', bad], c.io);
    expect(code).toBe(2);
    const err = c.err();
    // schema errors (all of them, not just the first)
    expect(err).toMatch(/bad\.yaml:4 \/episodes\/ways: must be >= 2/);
    expect(err).toMatch(/bad\.yaml:9 \/train\/iterations: must be >= 0/);
    expect(err).toMatch(/\/train\/sed: unknown property 'sed' \(allowed: iterations, timeBudgetSeconds, metaBatch, seed,/);
    expect(err).toMatch(/\/evaluate\/engine: must be one of the allowed values, got "gpu" \(allowed: onnxruntime, tfjs\)/);
    expect(err).toMatch(/\/export\/onnx: must be one of: string, false/);
    // second stage (learner/dataset options) runs only once the file's own shape is valid
    const c2 = capture();
    const bad2 = writeFile(
      'bad2.yaml',
      ['data:', '  dataset: synthetic-glyphs', '  options: { numClasses: 0 }', 'learner:', '  id: protonet', '  backbone: { type: resnet99 }', '  distanse: cosine'].join('\n'),
    );
    expect(await main(['validate', bad2], c2.io)).toBe(2);
    const err2 = c2.err();
    expect(err2).toMatch(/bad2\.yaml:6 \/learner\/backbone\/type: must be one of the allowed values, got "resnet99" \(allowed: conv4, mlp, conv1d\)/);
    expect(err2).toMatch(/bad2\.yaml:7 \/learner\/distanse: unknown property 'distanse' \(allowed: backbone, optimizer, lrSchedule, distance, cosineScale, engine\)/);
    expect(err2).toMatch(/bad2\.yaml:3 \/data\/options\/numClasses: must be >= 1/);
    const c3 = capture();
    const bad3 = writeFile('bad3.yaml', 'data: { dataset: nope }\nlearner: { id: protonett }\n');
    expect(await main(['validate', bad3], c3.io)).toBe(2);
    expect(c3.err()).toMatch(/\/learner\/id: unknown learner 'protonett' \(allowed: .*protonet/);
    // `run` on an invalid file also exits 2 and writes nothing
    const out = path.join(tmp, 'should-not-exist');
    const c4 = capture();
    expect(await main(['run', bad, '--out', out], c4.io)).toBe(2);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(tmp).sort()).toEqual([...before, 'bad2.yaml', 'bad3.yaml'].sort());
  });

  const cli = path.resolve(__dirname, '../dist/cli.js');
  it.skipIf(!fs.existsSync(cli))('the built binary (dist/cli.js) exits 2 on an invalid file and 0 on the default example', () => {
    expect(fs.readFileSync(cli, 'utf8').startsWith('#!/usr/bin/env node')).toBe(true);
    const bad = writeFile('bin-bad.yaml', 'data: { dataset: synthetic-glyphs }\nlearner: { id: protonet }\ntrain: { metaBatch: 0 }\n');
    const r = spawnSync(process.execPath, [cli, 'validate', bad], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/bin-bad\.yaml:3 \/train\/metaBatch: must be >= 1/);
    const ok = spawnSync(process.execPath, [cli, 'validate', path.resolve(__dirname, '../../../examples/default.yaml')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    fs.rmSync(bad);
  });

  it('accepts the default example and fills defaults', async () => {
    const cfg = await loadPipeline(path.resolve(__dirname, '../../../examples/default.yaml'));
    expect(cfg.learner.id).toBe('protonet');
    expect(cfg.evaluate.episodes).toBe(600);
    expect((cfg.learner['optimizer'] as { beta2: number }).beta2).toBe(0.999);
    await expect(loadPipeline(path.join(tmp, 'missing.yaml'))).rejects.toBeInstanceOf(PipelineValidationError);
  });
});

describe('metalearn run', () => {
  it('runs a tiny pipeline end to end and writes every output', async () => {
    const f = writeFile('tiny.yaml', tinyPipeline());
    const out = path.join(tmp, 'tiny-out');
    const c = capture();
    const code = await main(['run', f, '--out', out], c.io);
    expect(c.err()).toBe('');
    expect(code).toBe(0);
    for (const p of ['metrics.jsonl', 'model.onnx', 'report.html', 'summary.json', 'checkpoints/LATEST']) expect(fs.existsSync(path.join(out, p)), p).toBe(true);
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(s).toMatchObject({ learner: 'protonet', dataset: 'synthetic-glyphs', ways: 5, shots: 1, testEpisodes: 12, iterations: 6, episodesSeen: 12 });
    for (const k of ['accuracy', 'ci95', 'trainSeconds']) expect(typeof s[k]).toBe('number');
    expect(['wasm', 'tensorflow', 'cpu']).toContain(s.backend);
    expect(s.onnx.path).toBe(path.join(out, 'model.onnx'));
    expect(s.onnx.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(s.onnx.bound).toBeGreaterThanOrEqual(1e-4); // tolerance × max(1, max |logit|)
    expect(s.onnx.parityOk).toBe(s.onnx.maxAbsDiff <= s.onnx.bound);
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.type === 'train').map((l) => l.iteration)).toEqual([2, 4, 6]);
    expect(lines.filter((l) => l.type === 'val').map((l) => l.iteration)).toEqual([3, 6]);
    expect(lines.at(-1)).toMatchObject({ type: 'test', episodes: 12 });
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
    expect(c.out()).toMatch(/accuracy .* ± .* % over 12 test episodes/);
    expect(c.out()).toMatch(/model: .*model\.onnx/);
  });

  it('same seed twice gives identical metrics.jsonl; interrupt + --resume reproduces it too', async () => {
    const f = writeFile('det.yaml', tinyPipeline({ evaluate: 'evaluate: { episodes: 6, ways: 5, shots: 1, queries: 3, engine: tfjs }\n', export: 'export: { onnx: false }\n' }));
    const a = path.join(tmp, 'det-a');
    const b = path.join(tmp, 'det-b');
    await runPipeline(f, { out: a, progressStream: null, log: () => {} });
    await runPipeline(f, { out: b, progressStream: null, log: () => {} });
    const ma = fs.readFileSync(path.join(a, 'metrics.jsonl'), 'utf8');
    expect(ma.split('\n').length).toBeGreaterThan(5);
    expect(fs.readFileSync(path.join(b, 'metrics.jsonl'), 'utf8')).toBe(ma);

    // stop after iteration 3 (not a checkpoint multiple): final checkpoint, then resume
    const c = path.join(tmp, 'det-c');
    const stop$ = new Subject<void>();
    const run = runPipeline(f, { out: c, progressStream: null, log: () => {}, stop$, onTrainEvent: (ev) => ev.iteration === 3 && stop$.next() });
    await expect(run).rejects.toBeInstanceOf(RunInterrupted);
    expect(fs.readFileSync(path.join(c, 'checkpoints', 'LATEST'), 'utf8').trim()).toBe('iter-0000003.json');
    await runPipeline(f, { out: c, resume: true, progressStream: null, log: () => {} });
    expect(fs.readFileSync(path.join(c, 'metrics.jsonl'), 'utf8')).toBe(ma);

    // a different seed gives a different log
    const d = path.join(tmp, 'det-d');
    await runPipeline(f, { out: d, seed: 8, progressStream: null, log: () => {} });
    expect(fs.readFileSync(path.join(d, 'metrics.jsonl'), 'utf8')).not.toBe(ma);
  });

  it('a diverging run stops with a clear message, keeps the last good checkpoint, exits 3', async () => {
    const f = writeFile(
      'nan.yaml',
      tinyPipeline({ learner: 'learner:\n  id: protonet\n  backbone: { type: conv4, filters: 8, blocks: 3 }\n  optimizer: { lr: 1.0e+30 }\n' }),
    );
    const out = path.join(tmp, 'nan-out');
    const c = capture();
    const code = await main(['run', f, '--out', out], c.io);
    expect(code).toBe(3);
    expect(c.err()).toMatch(/meta-training diverged: loss is (NaN|Infinity) at iteration \d+/);
    expect(c.err()).toMatch(/Last good checkpoint: /);
    expect(fs.existsSync(path.join(out, 'summary.json'))).toBe(false);
  });
});
