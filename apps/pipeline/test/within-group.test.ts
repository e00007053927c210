import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pngjs from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '@metalearn/core';
import { loadOmniglot } from '@metalearn/data';
import { PipelineValidationError, evalCheckpoint, loadPipeline, main } from '../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-within-group-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(): { io: Parameters<typeof main>[1]; err: () => string } {
  let e = '';
  return { io: { stdout: () => {}, stderr: (s) => void (e += s), progress: null, signals: false }, err: () => e };
}

function write(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

/**
 * A tiny Omniglot in Lake's layout: images_{background,evaluation}/<Alphabet>/characterNN/*.png,
 * 12x12 grey PNGs (dark ink on white): a class-specific random stroke pattern plus per-image noise.
 */
function tinyOmniglot(root: string, sets: Record<'background' | 'evaluation', Record<string, number>>): void {
  const rng = new Rng('tiny-omniglot');
  const S = 12;
  for (const [set, alphabets] of Object.entries(sets)) {
    for (const [alphabet, nChars] of Object.entries(alphabets)) {
      for (let c = 1; c <= nChars; c++) {
        const dir = path.join(root, `images_${set}`, alphabet, `character${String(c).padStart(2, '0')}`);
        fs.mkdirSync(dir, { recursive: true });
        const ink = Array.from({ length: S * S }, () => rng.next() < 0.3);
        for (let k = 1; k <= 4; k++) {
          const png = new pngjs.PNG({ width: S, height: S });
          for (let p = 0; p < S * S; p++) {
            const on = rng.next() < 0.1 ? !ink[p] : ink[p];
            const v = on ? 0 : 255;
            png.data.set([v, v, v, 255], p * 4);
          }
          fs.writeFileSync(path.join(dir, `${c}_${k}.png`), pngjs.PNG.sync.write(png));
        }
      }
    }
  }
}

const root = path.join(tmp, 'omniglot');
tinyOmniglot(root, {
  background: { Alpha: 4, Beta: 3, Gamma: 5 },
  evaluation: { Delta: 3, Epsilon: 4 },
});

const pipeline = (episodes: string, evaluate: string): string =>
  [
    'data:',
    '  dataset: omniglot',
    `  options: { root: ${JSON.stringify(root)}, size: 12, rotations: false, split: lake, cache: false }`,
    '  trainSplit: train',
    '  valSplit: test',
    '  testSplit: test',
    `episodes: ${episodes}`,
    'learner:',
    '  id: protonet',
    '  backbone: { type: conv4, filters: 8, blocks: 2 }',
    'train: { iterations: 4, metaBatch: 1, seed: 3, checkpointEvery: 2, valEvery: 2, valEpisodes: 2, logEvery: 2 }',
    `evaluate: ${evaluate}`,
    'export: { onnx: model.onnx, parity: true }',
    '',
  ].join('\n');

describe('pipeline: withinGroup episodes', () => {
  it('the schema accepts withinGroup in episodes and evaluate and rejects a bad value with its path', async () => {
    const ok = write('ok.yaml', pipeline('{ ways: 3, shots: 1, queries: 1, withinGroup: alphabet }', '{ episodes: 4, ways: 3, shots: 1, queries: 1, withinGroup: alphabet }'));
    const cfg = await loadPipeline(ok);
    expect(cfg.episodes.withinGroup).toBe('alphabet');
    expect(cfg.evaluate.withinGroup).toBe('alphabet');
    const noGroup = await loadPipeline(write('plain.yaml', pipeline('{ ways: 3, shots: 1, queries: 1 }', '{ episodes: 4, ways: 3 }')));
    expect(noGroup.evaluate.withinGroup).toBeUndefined();
    const bad = write('bad.yaml', pipeline("{ ways: 3, shots: 1, queries: 1, withinGroup: '' }", '{ episodes: 4, ways: 3, withinGroup: 7 }'));
    const err = (await loadPipeline(bad).then(
      () => null,
      (e: unknown) => e,
    )) as PipelineValidationError;
    expect(err).toBeInstanceOf(PipelineValidationError);
    const paths = err.issues.map((i) => i.path);
    expect(paths).toContain('/episodes/withinGroup');
    expect(paths).toContain('/evaluate/withinGroup');
    expect(err.issues.find((i) => i.path === '/evaluate/withinGroup')!.line).toBe(12);
  });

  it('runs within-alphabet training and test episodes end to end; eval reproduces the test accuracy', async () => {
    const f = write('run.yaml', pipeline('{ ways: 3, shots: 1, queries: 1, withinGroup: alphabet }', '{ episodes: 4, ways: 3, shots: 1, queries: 1, withinGroup: alphabet, engine: onnxruntime }'));
    const out = path.join(tmp, 'run-out');
    const c = capture();
    expect(await main(['run', f, '--out', out], c.io)).toBe(0);
    expect(c.err()).toBe('');
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(s).toMatchObject({ dataset: 'omniglot', evalDataset: 'omniglot', ways: 3, shots: 1, testEpisodes: 4 });
    // test episode 0 (the exported one): 3 classes of one evaluation alphabet
    const ds = await loadOmniglot({ root, size: 12, rotations: false, split: 'lake', cache: false });
    const info = (s.onnx.classes as number[]).map((c) => ds.classInfo(c));
    expect(info).toHaveLength(3);
    expect(new Set(info.map((i) => i['alphabet'])).size).toBe(1);
    expect(info[0]!['set']).toBe('evaluation');
    // 4 test episodes x 3 queries: each accuracy is a multiple of 1/3
    const e = await evalCheckpoint(out);
    expect(e.withinGroup).toBe('alphabet');
    expect(e.mean).toBeCloseTo(s.accuracy, 10);
    // without withinGroup, a 5-way test mixes alphabets (Epsilon has only 4 characters)
    const plain = await evalCheckpoint(out, { ways: 5, withinGroup: '' });
    expect(plain.n).toBe(4);
  });

  it('an alphabet with fewer characters than ways is a pipeline error at /evaluate (exit 2, nothing written)', async () => {
    const f = write('small.yaml', pipeline('{ ways: 3, shots: 1, queries: 1, withinGroup: alphabet }', '{ episodes: 4, ways: 4, shots: 1, queries: 1, withinGroup: alphabet }'));
    const out = path.join(tmp, 'small-out');
    const c = capture();
    expect(await main(['run', f, '--out', out], c.io)).toBe(2);
    expect(c.err()).toMatch(/\/evaluate: omniglot: withinGroup 'alphabet': 1 of the 2 groups of split 'test' have fewer than ways = 4 classes: 'Delta' \(3\)/);
    expect(fs.existsSync(out)).toBe(false);
    // a training spec with a dataset lacking the field names the class and the field
    const g = write(
      'glyphs.yaml',
      'data: { dataset: synthetic-glyphs, options: { numClasses: 30, itemsPerClass: 4, size: 12 } }\nepisodes: { ways: 3, shots: 1, queries: 1, withinGroup: alphabet }\nlearner: { id: protonet }\ntrain: { iterations: 1 }\nevaluate: { episodes: 1, ways: 3, queries: 1 }\n',
    );
    const c2 = capture();
    expect(await main(['run', g, '--out', path.join(tmp, 'glyphs-out')], c2.io)).toBe(2);
    expect(c2.err()).toMatch(/\/episodes: synthetic-glyphs: withinGroup 'alphabet': class \d+ \('[^']+'\) has no 'alphabet' field/);
  });
});
