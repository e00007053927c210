import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, getLearner, initEngine } from '@metalearn/core';
import { loadUea } from '@metalearn/data';
import '@metalearn/metric';
import { fullSplitEpisode, fullSplitEvaluate } from '../src/full-eval.js';
import { runPipeline } from '../src/index.js';
import { summaryLines } from '../src/run.js';

let tmp: string;

/** A tiny UEA-format .ts file: 3 classes, 2 channels, length 16; class k is a sine of frequency k+1 on channel k % 2. */
function tsFile(name: string, perClass: number, seed: string, labels = ['a', 'b', 'c']): string {
  const rng = new Rng(seed);
  const lines = [`@problemName ${name}`, '@timeStamps false', '@missing false', '@univariate false', '@dimensions 2', '@equalLength true', '@seriesLength 16', `@classLabel true ${labels.join(' ')}`, '@data'];
  labels.forEach((lab, k) => {
    for (let i = 0; i < perClass; i++) {
      const ph = rng.uniform(0, 6.28);
      const dims = [0, 1].map((c) => Array.from({ length: 16 }, (_, t) => ((c === k % 2 ? Math.sin(((k + 1) * 6.28 * t) / 16 + ph) : 0) + 0.2 * rng.normal()).toFixed(4)).join(','));
      lines.push(`${dims.join(':')}:${lab}`);
    }
  });
  return lines.join('\n') + '\n';
}

beforeAll(async () => {
  await initEngine({ backend: 'wasm', quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-fulleval-'));
  fs.mkdirSync(path.join(tmp, 'uea', 'Toy'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'uea', 'Toy', 'Toy_TRAIN.ts'), tsFile('Toy', 6, 'train'));
  fs.writeFileSync(path.join(tmp, 'uea', 'Toy', 'Toy_TEST.ts'), tsFile('Toy', 5, 'test'));
  fs.mkdirSync(path.join(tmp, 'uea', 'Other'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'uea', 'Other', 'Other_TEST.ts'), tsFile('Other', 2, 'x', ['a', 'c', 'b']));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const tapnetOptions = {
  encoder: { groups: 2, groupRatio: 0.5, groupSeed: 0, filters: [8, 8], kernelSizes: [5, 3], lstmUnits: 4, leakyAlpha: 0.01 },
  mapping: [16, 8],
  attentionUnits: 8,
  protoLoss: 0.01,
  optimizer: { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
  lrSchedule: { every: 0, factor: 0.5 },
};

describe('evaluate.mode full (whole training split as support, whole test split classified)', () => {
  it('fullSplitEpisode: every training example in the support, every test example in the query, labels by class', async () => {
    const train = await loadUea({ root: path.join(tmp, 'uea'), name: 'Toy', parts: ['train'], cache: false });
    const test = await loadUea({ root: path.join(tmp, 'uea'), name: 'Toy', parts: ['test'], cache: false });
    const ep = fullSplitEpisode(train, 'all', test, 'all');
    expect(ep.ways).toBe(3);
    expect(ep.shots).toBe(6);
    expect(ep.support.x.shape).toEqual([18, 16, 2]);
    expect(ep.query.x.shape).toEqual([15, 16, 2]);
    expect(Array.from(ep.support.y)).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    expect(Array.from(ep.query.y)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    // the query holds the test examples themselves, in order
    const q = ep.query.x.dataSync();
    expect(Array.from(q.subarray(0, 32))).toEqual(Array.from((test.data as Float32Array).subarray(0, 32)));
    ep.dispose!();
    const other = await loadUea({ root: path.join(tmp, 'uea'), name: 'Other', parts: ['test'], cache: false });
    expect(() => fullSplitEpisode(train, 'all', other, 'all')).toThrow(/classes \[a, b, c\].*\[a, c, b\]/);
    expect(() => fullSplitEpisode(train, 'nope', test, 'all')).toThrow(/no split 'nope'/);
  });

  it('fullSplitEvaluate: accuracy over test examples equals the adapted classifier’s, in tfjs and onnxruntime', async () => {
    const train = await loadUea({ root: path.join(tmp, 'uea'), name: 'Toy', parts: ['train'], cache: false });
    const test = await loadUea({ root: path.join(tmp, 'uea'), name: 'Toy', parts: ['test'], cache: false });
    const learner = getLearner('tapnet').create(tapnetOptions, { inputShape: [16, 2], seed: 3 });
    const ep = fullSplitEpisode(train, 'all', test, 'all');
    const clf = learner.adapt(ep.support, ep.ways);
    const pred = tf.tidy(() => tf.argMax(clf.predict(ep.query.x), 1).dataSync());
    clf.dispose();
    const want = Array.from(pred).filter((p, i) => p === ep.query.y[i]).length / 15;
    const a = await fullSplitEvaluate(learner, ep, { engine: 'tfjs', batch: 4 });
    const b = await fullSplitEvaluate(learner, ep, { engine: 'onnxruntime' });
    expect(a.n).toBe(15);
    expect(a.accuracies).toHaveLength(15);
    expect(a.mean).toBeCloseTo(want, 10);
    expect(b.accuracies).toEqual(a.accuracies);
    ep.dispose!();
    learner.dispose();
  });

  it('a pipeline with evaluate.mode full trains, classifies the test file and says so in summary.json / metrics.jsonl', async () => {
    const yaml = `name: toy-full
data:
  dataset: uea
  options: { root: ${JSON.stringify(path.join(tmp, 'uea'))}, name: Toy, parts: [train], cache: false }
  trainSplit: all
  valSplit: all
  testSplit: all
episodes: { ways: 3, shots: 2, queries: 2 }
learner: ${JSON.stringify({ id: 'tapnet', ...tapnetOptions })}
train: { iterations: 3, metaBatch: 1, seed: 1, checkpointEvery: 10, valEvery: 0, valEpisodes: 1, logEvery: 1 }
evaluate:
  mode: full
  ways: 3
  shots: 1
  queries: 1
  dataset: { dataset: uea, options: { root: ${JSON.stringify(path.join(tmp, 'uea'))}, name: Toy, parts: [test], cache: false }, split: all }
export: { onnx: model.onnx, parity: true, tolerance: 0.0001 }
`;
    const f = path.join(tmp, 'toy-full.yaml');
    fs.writeFileSync(f, yaml);
    const out = path.join(tmp, 'run');
    const s = await runPipeline(f, { out, progressStream: null, log: () => {} });
    expect(s.evalMode).toBe('full');
    expect(s.testEpisodes).toBe(15);
    expect(s.ways).toBe(3);
    expect(s.shots).toBe(6);
    expect(s.onnx.parityOk).toBe(true);
    expect(s.onnx.classes).toEqual([0, 1, 2]);
    expect(Math.round(s.accuracy * 15)).toBeCloseTo(s.accuracy * 15, 9);
    expect(s.headline).toMatch(/test-set accuracy .* %.*15 test examples.*all 18 training examples/);
    expect(summaryLines(s).join('\n')).toMatch(/model: .*model\.onnx \(adapted to the whole training split;/);
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ type: 'test', mode: 'full', testExamples: 15, episodes: 15, ways: 3, shots: 6 });
  });
});
