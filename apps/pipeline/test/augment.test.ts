import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PipelineValidationError, loadPipeline, main } from '../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-augment-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

function capture(): { io: Parameters<typeof main>[1]; err: () => string } {
  let e = '';
  return { io: { stdout: () => {}, stderr: (s) => void (e += s), progress: null, signals: false }, err: () => e };
}

const glyphs = (episodes: string, iterations = 4): string =>
  [
    'data: { dataset: synthetic-glyphs, options: { numClasses: 24, itemsPerClass: 4, size: 12 } }',
    `episodes: ${episodes}`,
    'learner: { id: protonet, backbone: { type: conv4, filters: 8, blocks: 2 } }',
    `train: { iterations: ${iterations}, metaBatch: 1, seed: 2, checkpointEvery: 2, valEvery: 0, logEvery: 1 }`,
    'evaluate: { episodes: 3, ways: 3, shots: 1, queries: 1 }',
    'export: { onnx: model.onnx, parity: true }',
    '',
  ].join('\n');

const trainLines = (out: string): { loss: number }[] =>
  fs
    .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.type === 'train');

async function expectIssue(file: string, ptr: string, message: RegExp): Promise<void> {
  const err = (await loadPipeline(file).then(
    () => null,
    (e: unknown) => e,
  )) as PipelineValidationError;
  expect(err).toBeInstanceOf(PipelineValidationError);
  const issue = err.issues.find((i) => i.path === ptr);
  expect(issue, JSON.stringify(err.issues)).toBeDefined();
  expect(issue!.message).toMatch(message);
}

describe('pipeline: episodes.augment', () => {
  it('the schema takes translate (default 0) and names the field of a bad value', async () => {
    const cfg = await loadPipeline(write('ok.yaml', glyphs('{ ways: 3, shots: 1, queries: 1, augment: { translate: 2 } }')));
    expect(cfg.episodes.augment?.translate).toBe(2);
    const none = await loadPipeline(write('none.yaml', glyphs('{ ways: 3, shots: 1, queries: 1, augment: {} }')));
    expect(none.episodes.augment?.translate).toBe(0);
    await expectIssue(write('neg.yaml', glyphs('{ ways: 3, shots: 1, queries: 1, augment: { translate: -1 } }')), '/episodes/augment/translate', />= 0/);
    await expectIssue(write('frac.yaml', glyphs('{ ways: 3, shots: 1, queries: 1, augment: { translate: 1.5 } }')), '/episodes/augment/translate', /integer/);
    await expectIssue(write('extra.yaml', glyphs('{ ways: 3, shots: 1, queries: 1, augment: { rotate: 10 } }')), '/episodes/augment/rotate', /unknown property 'rotate'/);
  });

  it('translated training episodes change training, the same seed repeats it exactly, test episodes are not augmented', async () => {
    const plain = path.join(tmp, 'plain');
    const aug = path.join(tmp, 'aug');
    const again = path.join(tmp, 'aug-again');
    for (const [name, episodes, out] of [
      ['plain.yaml', '{ ways: 3, shots: 1, queries: 2 }', plain],
      ['aug.yaml', '{ ways: 3, shots: 1, queries: 2, augment: { translate: 2 } }', aug],
      ['aug.yaml', '{ ways: 3, shots: 1, queries: 2, augment: { translate: 2 } }', again],
    ] as const) {
      const c = capture();
      expect(await main(['run', write(name, glyphs(episodes)), '--out', out, '--plain'], c.io), c.err()).toBe(0);
    }
    const [p, a, b] = [trainLines(plain), trainLines(aug), trainLines(again)];
    expect(a).toHaveLength(4);
    // the first update sees the same parameters, so its loss differs only through the images
    expect(a[0]!.loss).not.toBe(p[0]!.loss);
    expect(b).toEqual(a);
    const sa = JSON.parse(fs.readFileSync(path.join(aug, 'summary.json'), 'utf8'));
    const sb = JSON.parse(fs.readFileSync(path.join(again, 'summary.json'), 'utf8'));
    expect(sb.accuracy).toBe(sa.accuracy);
    expect(sa.onnx.parityOk).toBe(true);
    // untrained (0 iterations): the same parameters give the same test accuracy with and without augment
    const acc: number[] = [];
    for (const [name, episodes] of [
      ['plain0.yaml', '{ ways: 3, shots: 1, queries: 2 }'],
      ['aug0.yaml', '{ ways: 3, shots: 1, queries: 2, augment: { translate: 2 } }'],
    ] as const) {
      const out = path.join(tmp, name.replace('.yaml', ''));
      const c = capture();
      expect(await main(['run', write(name, glyphs(episodes, 0)), '--out', out, '--plain'], c.io), c.err()).toBe(0);
      acc.push(JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).accuracy);
    }
    expect(acc[1]).toBe(acc[0]);
  });

  it('translate on data that are not images is a pipeline error at /episodes/augment/translate (exit 2, nothing written)', async () => {
    const ts = [
      '@problemName Seq',
      '@timeStamps false',
      '@missing false',
      '@univariate true',
      '@equalLength true',
      '@seriesLength 4',
      '@classLabel true a b c',
      '@data',
      ...['a', 'b', 'c'].flatMap((l, k) => [0, 1, 2].map((i) => `${[0, 1, 2, 3].map((t) => (k + 0.1 * i * t).toFixed(2)).join(',')}:${l}`)),
      '',
    ].join('\n');
    fs.mkdirSync(path.join(tmp, 'uea', 'Seq'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'uea', 'Seq', 'Seq_TRAIN.ts'), ts);
    const f = write(
      'seq.yaml',
      [
        `data: { dataset: uea, options: { root: ${JSON.stringify(path.join(tmp, 'uea'))}, name: Seq, parts: [train], cache: false }, trainSplit: all, valSplit: all, testSplit: all }`,
        'episodes: { ways: 3, shots: 1, queries: 1, augment: { translate: 1 } }',
        'learner: { id: protonet, backbone: { type: mlp, hidden: [8] } }',
        'train: { iterations: 1 }',
        'evaluate: { episodes: 1, ways: 3, queries: 1 }',
        '',
      ].join('\n'),
    );
    const out = path.join(tmp, 'seq-out');
    const c = capture();
    expect(await main(['run', f, '--out', out], c.io)).toBe(2);
    expect(c.err()).toMatch(/\/episodes\/augment\/translate: translations need image data \[height, width, channels\]; dataset 'uea' .* has examples of shape \[4,1\]/);
    expect(fs.existsSync(out)).toBe(false);
  });
});
