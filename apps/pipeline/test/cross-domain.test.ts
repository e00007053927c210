import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '@metalearn/core';
import { InputError, evalCheckpoint, main } from '../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-cross-domain-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(): { io: Parameters<typeof main>[1]; err: () => string; out: () => string } {
  let e = '';
  let o = '';
  return { io: { stdout: (s) => void (o += s), stderr: (s) => void (e += s), progress: null, signals: false }, err: () => e, out: () => o };
}

function write(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

/** An IDX (MNIST format) uint8 image file [n, S, S] and label file [n]. */
function writeIdx(prefix: string, images: Uint8Array[], labels: number[], S: number): { images: string; labels: string } {
  const hdr = (type: number, dims: number[]) => {
    const b = Buffer.alloc(4 + 4 * dims.length);
    b[2] = type;
    b[3] = dims.length;
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    return b;
  };
  const img = path.join(tmp, `${prefix}-images-idx3-ubyte`);
  const lab = path.join(tmp, `${prefix}-labels-idx1-ubyte`);
  fs.writeFileSync(img, Buffer.concat([hdr(0x08, [images.length, S, S]), ...images.map((i) => Buffer.from(i))]));
  fs.writeFileSync(lab, Buffer.concat([hdr(0x08, [labels.length]), Buffer.from(labels)]));
  return { images: img, labels: lab };
}

/**
 * `classes` classes of `perClass` S x S images; every image of a class is the same random pattern,
 * so an embedding learner classifies these episodes perfectly (query = its class's support example).
 */
function idxSet(prefix: string, S: number, classes = 6, perClass = 4): { images: string; labels: string } {
  const rng = new Rng(`idx/${prefix}`);
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  for (let c = 0; c < classes; c++) {
    const pattern = Uint8Array.from({ length: S * S }, () => (rng.next() < 0.35 ? 255 : 0));
    for (let k = 0; k < perClass; k++) {
      images.push(pattern);
      labels.push(10 + c);
    }
  }
  return writeIdx(prefix, images, labels, S);
}

const pipeline = (idx: { images: string; labels: string }): string =>
  [
    'data:',
    '  dataset: synthetic-glyphs',
    '  options: { numClasses: 40, itemsPerClass: 6, size: 12 }',
    'episodes: { ways: 4, shots: 1, queries: 2 }',
    'learner:',
    '  id: protonet',
    '  backbone: { type: conv4, filters: 8, blocks: 2 }',
    'train: { iterations: 4, metaBatch: 1, seed: 5, checkpointEvery: 2, valEvery: 2, valEpisodes: 2, logEvery: 2 }',
    'evaluate:',
    '  episodes: 6',
    '  ways: 4',
    '  shots: 1',
    '  queries: 2',
    '  engine: onnxruntime',
    '  dataset:                 # the cross-domain switch',
    '    dataset: idx',
    `    options: { images: ${JSON.stringify(idx.images)}, labels: ${JSON.stringify(idx.labels)}, name: tiny-idx, cache: false }`,
    '    split: all',
    'export: { onnx: model.onnx, parity: true }',
    '',
  ].join('\n');

describe('cross-domain evaluation (evaluate.dataset)', () => {
  it('trains on synthetic glyphs and evaluates on an IDX set: summary, metrics and eval name and use the evaluation data', async () => {
    const idx = idxSet('ok', 12);
    const f = write('cross.yaml', pipeline(idx));
    const out = path.join(tmp, 'cross-out');
    const c = capture();
    expect(await main(['run', f, '--out', out], c.io)).toBe(0);
    expect(c.err()).toBe('');
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(s).toMatchObject({ dataset: 'synthetic-glyphs', evalDataset: 'tiny-idx', ways: 4, shots: 1, testEpisodes: 6, iterations: 4 });
    expect(s.headline).toMatch(/on tiny-idx: 4-way 1-shot/);
    expect(s.accuracyByInstance).toBeUndefined(); // only sequence learners (MANN, LSTM) report it
    // every query is a copy of its class's support example: perfect on the IDX data (glyph episodes are not)
    expect(s.accuracy).toBe(1);
    // the exported classifier was adapted to an IDX episode (6 classes: ids 0..5)
    expect(s.onnx.classes).toHaveLength(4);
    for (const k of s.onnx.classes) expect(k).toBeLessThan(6);
    expect(s.onnx.parityOk).toBe(true);
    const test = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'test');
    expect(test).toEqual([expect.objectContaining({ accuracy: 1, episodes: 6, ways: 4 })]);
    // `metalearn eval` on the run's checkpoint takes the evaluation dataset from the pipeline
    const e = await evalCheckpoint(out);
    expect(e).toMatchObject({ dataset: 'tiny-idx', split: 'all', episodes: 6, mean: 1 });
    // ... and on the training domain's test split (a dataset config) it is a different, lower figure
    const glyphs = write('glyphs-test.json', JSON.stringify({ type: 'synthetic-glyphs', numClasses: 40, itemsPerClass: 6, size: 12, split: 'test' }));
    const g = await evalCheckpoint(out, { data: glyphs, ways: 4, queries: 2, episodes: 6 });
    expect(g.dataset).toBe('synthetic-glyphs');
    expect(g.mean).toBeLessThan(1);
    // --set: a learner config field replaced at evaluation (checked against the learner's schema)
    const cos = await evalCheckpoint(out, { data: glyphs, ways: 4, queries: 2, episodes: 6, set: { distance: 'cosine', cosineScale: 5 } });
    expect(cos.set).toEqual({ distance: 'cosine', cosineScale: 5 });
    expect(cos.accuracies).not.toEqual(g.accuracies);
    await expect(evalCheckpoint(out, { set: { nonsense: 1 } })).rejects.toThrow(/--set on checkpoint .*\(learner 'protonet'\): nonsense: unknown property 'nonsense'/);
    await expect(evalCheckpoint(out, { set: { distance: 'manhattan' } })).rejects.toThrow(InputError);
    const c2 = capture();
    expect(await main(['eval', out, '--set', 'distance=manhattan'], c2.io)).toBe(2);
    expect(c2.err()).toMatch(/distance: must be one of the allowed values, got "manhattan" \(allowed: sqeuclidean, cosine\)/);
    const c3 = capture();
    expect(await main(['eval', out, '--set', 'distance'], c3.io)).toBe(2);
    expect(c3.err()).toMatch(/--set expects field=value/);
    const c4 = capture();
    expect(await main(['eval', out, '--json', '--set', 'distance=cosine', '--set', 'cosineScale=5', '--data', glyphs, '--ways', '4', '--queries', '2', '--episodes', '6'], c4.io)).toBe(0);
    expect(JSON.parse(c4.out())).toMatchObject({ set: { distance: 'cosine', cosineScale: 5 }, mean: cos.mean });
  });

  it('an evaluation dataset of another shape is an error naming evaluate.dataset: exit 2, nothing written', async () => {
    const idx = idxSet('small', 10);
    const f = write('cross-bad.yaml', pipeline(idx));
    const out = path.join(tmp, 'cross-bad-out');
    const c = capture();
    expect(await main(['run', f, '--out', out], c.io)).toBe(2);
    expect(c.err()).toMatch(
      /cross-bad\.yaml \/evaluate\/dataset: evaluate\.dataset 'idx' \(tiny-idx\) has examples of shape \[10,10,1\], the training data 'synthetic-glyphs' \(synthetic-glyphs\) \[12,12,1\]/,
    );
    expect(fs.existsSync(out)).toBe(false);
    // eval of a trained checkpoint against data of another shape: an input error (exit 2 in the CLI)
    const ck = path.join(tmp, 'cross-out');
    const cfg = write('small-idx.json', JSON.stringify({ type: 'idx', images: idx.images, labels: idx.labels, name: 'tiny-idx', cache: false, split: 'all' }));
    await expect(evalCheckpoint(ck, { data: cfg })).rejects.toThrow(InputError);
    await expect(evalCheckpoint(ck, { data: cfg })).rejects.toThrow(/has examples of shape \[10,10,1\].*trained on \[12,12,1\]/);
  });
});
