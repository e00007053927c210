/**
 * TapNet on one UEA multivariate archive set, the paper's protocol: train on <name>_TRAIN (episodes of
 * all classes, `SHOTS` support + `QUERIES` query per class), then the prototypes come from the whole
 * training set and the <name>_TEST series are classified (accuracy reported; also through the
 * exported ONNX graph in onnxruntime).
 *   UEA_NAME=BasicMotions TRAIN_SECONDS=180 npx vitest run -c scripts/tapnet-vitest.config.ts scripts/tapnet-uea.repro.ts
 * PRESET=paper: the paper's widths (conv [256, 256, 128], LSTM 128, mapping [500, 300]); PRESET=small
 * (default): conv [64, 64, 32], LSTM 32, mapping [128, 64] (2 CPU cores).
 * Skips (with a message) when ../shared/data/uea/<name> is absent.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { OnnxRunner, initEngine, maxAbsDiff } from '@metalearn/core';
import { EpisodeSampler, loadUea, materialize } from '@metalearn/data';
import { TapNet, type TapNetConfig } from '@metalearn/metric';

const ROOT = path.resolve(__dirname, '../../../../shared/data/uea');
const NAME = process.env['UEA_NAME'] ?? 'BasicMotions';
const SECONDS = Number(process.env['TRAIN_SECONDS'] ?? 120);
const SHOTS = Number(process.env['SHOTS'] ?? 5);
const QUERIES = Number(process.env['QUERIES'] ?? 5);
const PRESET = process.env['PRESET'] ?? 'small';
const SEED = Number(process.env['SEED'] ?? 1);
const LSTM = process.env['LSTM'];
const LR = Number(process.env['LR'] ?? 1e-3);
const NORMALIZE = (process.env['NORMALIZE'] ?? 'instance') as 'instance' | 'dataset' | 'none';
const have = existsSync(path.join(ROOT, NAME, `${NAME}_TRAIN.ts`));

it.skipIf(!have)(`TapNet on UEA ${NAME}`, async () => {
  const info = await initEngine({ backend: 'wasm', quiet: true });
  const train = await loadUea({ root: ROOT, name: NAME, parts: ['train'], normalize: NORMALIZE, cache: false });
  const test = await loadUea({ root: ROOT, name: NAME, parts: ['test'], normalize: NORMALIZE, cache: false });
  const [L, C] = train.featureShape as [number, number];
  const ways = train.numClasses;
  const all = Array.from({ length: ways }, (_, i) => i);
  const paper = PRESET === 'paper';
  const config: TapNetConfig = {
    optimizer: { lr: LR, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 1e-4 },
    lrSchedule: { every: 0, factor: 0.5 },
    encoder: { groups: 3, groupRatio: 0.667, groupSeed: 0, filters: paper ? [256, 256, 128] : [64, 64, 32], kernelSizes: [8, 5, 3], lstmUnits: LSTM !== undefined ? Number(LSTM) : paper ? 128 : 32, leakyAlpha: 0.01 },
    mapping: paper ? [500, 300] : [128, 64],
    attentionUnits: paper ? 128 : 32,
    protoLoss: 0.01,
  };
  const learner = new TapNet(config, { inputShape: [-1, C], seed: SEED });
  const minItems = Math.min(...all.map((c) => train.itemCount(c)));
  const spec = { ways, shots: Math.min(SHOTS, minItems - 1), queries: Math.min(QUERIES, minItems - Math.min(SHOTS, minItems - 1)) };
  const sampler = new EpisodeSampler(train, all, spec, SEED);
  const full = (ds: typeof train) => materialize(ds, { classes: all, support: all.map((c) => Array.from({ length: ds.itemCount(c) }, (_, i) => i)), query: all.map(() => []) });
  const trainSet = full(train);
  const testSet = full(test);
  const evaluate = () => {
    const clf = learner.adapt(trainSet.support, ways);
    const pred = tf.tidy(() => tf.argMax(clf.predict(testSet.support.x), 1).dataSync());
    clf.dispose();
    let ok = 0;
    pred.forEach((p, i) => (ok += p === testSet.support.y[i] ? 1 : 0));
    return ok / pred.length;
  };
  console.log(`${NAME}: train ${trainSet.support.y.length}, test ${testSet.support.y.length} series [${L}, ${C}], ${ways} classes; episodes ${JSON.stringify(spec)}; preset ${PRESET}; backend ${info.backend}`);
  const t0 = Date.now();
  let it = 0;
  let win = { loss: 0, acc: 0, n: 0 };
  while (Date.now() - t0 < SECONDS * 1000) {
    const ep = sampler.episode(it);
    const r = learner.metaTrainStep([ep]);
    ep.dispose!();
    it++;
    win = { loss: win.loss + r.loss, acc: win.acc + r.accuracy, n: win.n + 1 };
    if (it % 25 === 0) {
      console.log(`it ${it} ${((Date.now() - t0) / 1000).toFixed(0)}s loss ${(win.loss / win.n).toFixed(4)} episode acc ${(win.acc / win.n).toFixed(3)} test acc ${evaluate().toFixed(3)}`);
      win = { loss: 0, acc: 0, n: 0 };
    }
  }
  const secs = (Date.now() - t0) / 1000;
  const acc = evaluate();
  const clf = learner.adapt(trainSet.support, ways);
  const want = clf.predict(testSet.support.x);
  const runner = await OnnxRunner.create(clf.toOnnx());
  const got = await runner.run(testSet.support.x.dataSync() as Float32Array, [...testSet.support.x.shape]);
  await runner.release();
  const diff = maxAbsDiff(got, { data: want.dataSync() as Float32Array, shape: [...want.shape] });
  let okOnnx = 0;
  for (let i = 0; i < testSet.support.y.length; i++) {
    const row = Array.from(got.data.subarray(i * ways, (i + 1) * ways));
    okOnnx += row.indexOf(Math.max(...row)) === testSet.support.y[i] ? 1 : 0;
  }
  console.log(`RESULT ${NAME}: ${it} episodes in ${secs.toFixed(0)} s; test accuracy ${acc.toFixed(3)} (tfjs), ${(okOnnx / testSet.support.y.length).toFixed(3)} (onnxruntime), max |tfjs − ort| ${diff.toExponential(2)} (max |logit| ${Math.max(...Array.from(want.dataSync()).map(Math.abs)).toFixed(2)})`);
  want.dispose();
  clf.dispose();
  trainSet.dispose!();
  testSet.dispose!();
  learner.dispose();
});
