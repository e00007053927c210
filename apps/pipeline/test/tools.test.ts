import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pngjs from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEpisodeSet, writeEpisodeSet, type ClassDataset } from '@metalearn/data';
import { main, openDataset, runPipeline, readMetadata, type RunSummary } from '../src/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-tools-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(): { io: Parameters<typeof main>[1]; out: () => string; err: () => string } {
  let o = '';
  let e = '';
  return { io: { stdout: (s) => void (o += s), stderr: (s) => void (e += s), progress: null, signals: false }, out: () => o, err: () => e };
}

const PIPE = [
  'data:\n  dataset: synthetic-glyphs\n  options: { numClasses: 40, itemsPerClass: 6, size: 16 }\n',
  'episodes: { ways: 5, shots: 1, queries: 2 }\n',
  'learner:\n  id: protonet\n  backbone: { type: conv4, filters: 8, blocks: 3 }\n',
  'train: { iterations: 4, metaBatch: 1, seed: 3, checkpointEvery: 2, valEvery: 0, logEvery: 2 }\n',
  'evaluate: { episodes: 8, ways: 5, shots: 1, queries: 2, engine: onnxruntime }\n',
  'export: { onnx: false }\n',
].join('');

let runDir: string;
let summary: RunSummary;
let ds: ClassDataset;
const pipeFile = path.join(tmp, 'tiny.yaml');

function writePng(file: string, ds: ClassDataset, cls: number, item: number): Float32Array {
  const [h, w] = ds.featureShape as [number, number, number];
  const v = new Float32Array(ds.featureSize);
  ds.readItem(cls, item, v);
  const png = new pngjs.PNG({ width: w, height: h, colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  const rgba = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    const g = Math.round(v[i]! * 255);
    rgba[i * 4] = rgba[i * 4 + 1] = rgba[i * 4 + 2] = g;
    rgba[i * 4 + 3] = 255;
  }
  png.data = rgba;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, pngjs.PNG.sync.write(png, { colorType: 0 }));
  return v.map((x) => Math.round(x * 255) / 255);
}

beforeAll(async () => {
  fs.writeFileSync(pipeFile, PIPE);
  runDir = path.join(tmp, 'run');
  summary = await runPipeline(pipeFile, { out: runDir, progressStream: null, log: () => {} });
  ds = await openDataset('synthetic-glyphs', { numClasses: 40, itemsPerClass: 6, size: 16 }, pipeFile);
});

describe('metalearn eval', () => {
  it("reproduces the run's test accuracy from its checkpoint; other episode specs; --json", async () => {
    const c = capture();
    expect(await main(['eval', runDir, '--json'], c.io)).toBe(0);
    const r = JSON.parse(c.out());
    expect(r).toMatchObject({ learner: 'protonet', ways: 5, shots: 1, n: 8, engine: 'onnxruntime', split: 'test', seed: 3 });
    expect(r.mean).toBe(summary.accuracy);
    expect(r.ci95).toBe(summary.ci95);
    const c2 = capture();
    const ck = path.join(runDir, 'checkpoints', 'iter-0000002.json');
    expect(await main(['eval', ck, '--ways', '3', '--shots', '2', '--episodes', '5', '--engine', 'tfjs'], c2.io)).toBe(0);
    expect(c2.out()).toMatch(/protonet on synthetic-glyphs \(split test\): 3-way 2-shot accuracy \d+\.\d+ ± \d+\.\d+ % over 5 test episodes \(tfjs, seed 3\)/);
    // a dataset config instead of the pipeline
    const dcfg = path.join(tmp, 'ds.json');
    fs.writeFileSync(dcfg, JSON.stringify({ type: 'synthetic-glyphs', numClasses: 40, itemsPerClass: 6, size: 16, split: 'val' }));
    const c3 = capture();
    expect(await main(['eval', runDir, '--data', dcfg, '--episodes', '3', '--queries', '2', '--json'], c3.io), c3.err()).toBe(0);
    expect(JSON.parse(c3.out())).toMatchObject({ split: 'val', n: 3 });
  });

  it('bad input: missing / corrupt checkpoint, impossible episodes, wrong data shape -> exit 2 naming it', async () => {
    const bad = async (argv: string[], re: RegExp): Promise<void> => {
      const c = capture();
      expect(await main(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err()).toMatch(re);
    };
    await bad(['eval', path.join(tmp, 'nope.json')], /checkpoint .*nope\.json: file not found/);
    const corrupt = path.join(tmp, 'corrupt.json');
    fs.writeFileSync(corrupt, fs.readFileSync(path.join(runDir, 'checkpoints', 'iter-0000004.json'), 'utf8').slice(0, 500));
    await bad(['eval', corrupt], /corrupt\.json: not valid JSON/);
    await bad(['eval', runDir, '--ways', '50'], /50-way .*split 'test'/);
    await bad(['eval', runDir, '--ways', 'x'], /--ways must be an integer/);
    await bad(['eval', runDir, '--support', 'x'], /eval: unknown option '--support'/);
    const other = path.join(tmp, 'ds28.json');
    fs.writeFileSync(other, JSON.stringify({ type: 'synthetic-glyphs', numClasses: 40, size: 28 }));
    await bad(['eval', runDir, '--data', other], /shape \[28,28,1\].*trained on \[16,16,1\]/);
    const unk = path.join(tmp, 'unk.json');
    fs.writeFileSync(unk, JSON.stringify({ type: 'imagenet' }));
    await bad(['eval', runDir, '--data', unk], /unk\.json: field 'type': unknown dataset 'imagenet'/);
  });
});

describe('metalearn export + predict', () => {
  const support = path.join(tmp, 'support');
  const queries: { file: string; cls: number; x: Float32Array }[] = [];
  const model = path.join(tmp, 'model.onnx');

  it('adapts on an image folder, verifies in onnxruntime, writes the model with class names', async () => {
    const testClasses = ds.splits['test']!.slice(0, 3);
    const names = ['alpha', 'beta', 'gamma'];
    testClasses.forEach((cls, k) => {
      for (let i = 0; i < 2; i++) writePng(path.join(support, names[k]!, `s${i}.png`), ds, cls, i);
      for (let i = 2; i < 4; i++) {
        const file = path.join(tmp, 'queries', `${names[k]}-${i}.png`);
        queries.push({ file, cls: k, x: writePng(file, ds, cls, i) });
      }
    });
    const c = capture();
    expect(await main(['export', runDir, '--support', support, '--out', model], c.io), c.err()).toBe(0);
    expect(c.out()).toMatch(/model\.onnx: protonet adapted on 6 support examples, 3 classes \(alpha, beta, gamma\); onnxruntime vs tfjs max \|Δlogit\| = /);
    expect(readMetadata(new Uint8Array(fs.readFileSync(model)))['metalearn.classes']).toBe('["alpha","beta","gamma"]');
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('predict: one line per PNG; the same pixels as .json and .npy give the same classes', async () => {
    const c = capture();
    expect(await main(['predict', model, ...queries.map((q) => q.file)], c.io), c.err()).toBe(0);
    const lines = c.out().trim().split('\n');
    expect(lines).toHaveLength(queries.length);
    const got = lines.map((l) => l.split('\t'));
    got.forEach(([f, cls], i) => {
      expect(f).toBe(queries[i]!.file);
      expect(['alpha', 'beta', 'gamma']).toContain(cls);
    });
    const json = path.join(tmp, 'q.json');
    fs.writeFileSync(json, JSON.stringify(queries.map((q) => Array.from(q.x))));
    const npy = path.join(tmp, 'q.npy');
    const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${queries.length}, 16, 16, 1), }`;
    const pad = 64 - ((10 + header.length + 1) % 64);
    const h = header + ' '.repeat(pad) + '\n';
    const buf = Buffer.alloc(10 + h.length + queries.length * 256 * 4);
    buf.write('\x93NUMPY', 0, 'latin1');
    buf[6] = 1;
    buf[7] = 0;
    buf.writeUInt16LE(h.length, 8);
    buf.write(h, 10, 'latin1');
    queries.forEach((q, i) => q.x.forEach((v, j) => buf.writeFloatLE(v, 10 + h.length + (i * 256 + j) * 4)));
    fs.writeFileSync(npy, buf);
    const c2 = capture();
    expect(await main(['predict', model, json, npy, '--json'], c2.io), c2.err()).toBe(0);
    const preds = c2.out().trim().split('\n').map((l) => JSON.parse(l));
    expect(preds).toHaveLength(2 * queries.length);
    expect(preds.map((p) => p.class)).toEqual([...got.map((g) => g[1]), ...got.map((g) => g[1])]);
    expect(preds[0].input).toBe(`${json}#0`);
    expect(preds[0].logits).toHaveLength(3);
  });

  it('a JSON support file {x, y, classes} with the same pixels gives the same model outputs', async () => {
    const xs: number[][] = [];
    const ys: number[] = [];
    // pixels of the support images, as the test wrote them (exact multiples of 1/255)
    const testClasses = ds.splits['test']!.slice(0, 3);
    testClasses.forEach((cls, k) => {
      for (let i = 0; i < 2; i++) {
        const v = new Float32Array(ds.featureSize);
        ds.readItem(cls, i, v);
        xs.push(Array.from(v, (x) => Math.round(x * 255) / 255));
        ys.push(k);
      }
    });
    const sj = path.join(tmp, 'support.json');
    fs.writeFileSync(sj, JSON.stringify({ x: xs, y: ys, classes: ['alpha', 'beta', 'gamma'] }));
    const m2 = path.join(tmp, 'model-json.onnx');
    const c = capture();
    expect(await main(['export', runDir, '--support', sj, '--out', m2], c.io), c.err()).toBe(0);
    const run = async (m: string): Promise<number[][]> => {
      const o = capture();
      expect(await main(['predict', m, ...queries.map((q) => q.file), '--json'], o.io), o.err()).toBe(0);
      return o.out().trim().split('\n').map((l) => JSON.parse(l).logits);
    };
    const a = await run(model);
    const b = await run(m2);
    a.forEach((row, i) => row.forEach((v, j) => expect(Math.abs(v - b[i]![j]!)).toBeLessThan(1e-4)));
  });

  it('adapts on an episode-set file (episode picked with --episode)', async () => {
    const set = makeEpisodeSet(ds, 'test', { ways: 4, shots: 2, queries: 1 }, 11, 2);
    const f = path.join(tmp, 'episodes.json');
    writeEpisodeSet(f, set);
    const out = path.join(tmp, 'ep.onnx');
    const c = capture();
    expect(await main(['export', runDir, '--support', f, '--episode', '1', '--out', out], c.io), c.err()).toBe(0);
    const names = set.episodes[1]!.classes.map((k) => ds.classInfo(k).name);
    expect(c.out()).toContain(`adapted on 8 support examples, 4 classes (${names.join(', ')})`);
    const c2 = capture();
    expect(await main(['export', runDir, '--support', f, '--episode', '5', '--out', path.join(tmp, 'ep5.onnx')], c2.io)).toBe(2);
    expect(c2.err()).toMatch(/episodes.json: field 'episodes' has 2 episodes, --episode 5 is out of range/);
    expect(fs.existsSync(path.join(tmp, 'ep5.onnx'))).toBe(false);
  });

  it('bad support / inputs: clear error naming the file, exit 2, nothing written', async () => {
    const out = path.join(tmp, 'never.onnx');
    const bad = async (argv: string[], re: RegExp): Promise<void> => {
      const c = capture();
      expect(await main(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err()).toMatch(re);
      expect(fs.existsSync(out)).toBe(false);
    };
    const one = path.join(tmp, 'one-class');
    fs.mkdirSync(path.join(one, 'a'), { recursive: true });
    fs.copyFileSync(queries[0]!.file, path.join(one, 'a', 'x.png'));
    await bad(['export', runDir, '--support', one, '--out', out], /one-class: needs at least 2 class folders/);
    const broken = path.join(tmp, 'broken');
    fs.mkdirSync(path.join(broken, 'a'), { recursive: true });
    fs.mkdirSync(path.join(broken, 'b'), { recursive: true });
    fs.copyFileSync(queries[0]!.file, path.join(broken, 'a', 'x.png'));
    fs.writeFileSync(path.join(broken, 'b', 'y.png'), 'not a png');
    await bad(['export', runDir, '--support', broken, '--out', out], /broken\/b\/y\.png/);
    await bad(['export', runDir, '--out', out], /missing --support/);
    const sj = path.join(tmp, 'support-bad.json');
    fs.writeFileSync(sj, JSON.stringify({ x: [Array(256).fill(0), Array(256).fill(1)], y: [0, 'b'] }));
    await bad(['export', runDir, '--support', sj, '--out', out], /support-bad\.json: field 'y' must be 2 non-negative integer labels/);
    await bad(['predict', model, path.join(tmp, 'missing.png')], /missing\.png: file not found/);
    const wrong = path.join(tmp, 'wrong.json');
    fs.writeFileSync(wrong, JSON.stringify([[1, 2, 3]]));
    await bad(['predict', model, wrong], /wrong\.json: examples have shape \[3\].*the model takes \[16,16,1\]/);
    await bad(['predict', path.join(tmp, 'q.json'), wrong], /q\.json is not an ONNX model|q\.json/);
  });
});

describe('metalearn bench', () => {
  it('--json: one JSON line per workload; table otherwise; unknown workload -> exit 2', async () => {
    const c = capture();
    // --no-torch: torch_ref.py runs every PyTorch workload (minutes); the pairing is unit-tested in core
    expect(await main(['bench', '--json', '--no-torch', '--workloads', 'onnx_conv4_fwd_batch80', '--iterations', '1', '--warmup', '0'], c.io), c.err()).toBe(0);
    const rows = c.out().trim().split('\n').map((l) => JSON.parse(l));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ workload: 'onnx_conv4_fwd_batch80', backend: 'onnxruntime', torch_workload: 'conv4_fwd_batch80', torch_ms: null, ratio: null });
    expect(rows[0].ms).toBeGreaterThan(0);
    expect(c.err()).toMatch(/torch unavailable \(skipped \(--no-torch\)\)/);
    const c2 = capture();
    expect(await main(['bench', '--no-torch', '--workloads', 'onnx_conv4_fwd_batch80', '--iterations', '1', '--warmup', '0'], c2.io)).toBe(0);
    expect(c2.out()).toMatch(/^workload\s+backend\s+ours ms\s+torch ms\s+ours\/torch\nonnx_conv4_fwd_batch80\s+onnxruntime\s+\d+\.\d\d\s+-\s+-\ntorch unavailable/);
    const c3 = capture();
    expect(await main(['bench', '--workloads', 'resnet'], c3.io)).toBe(2);
    expect(c3.err()).toMatch(/unknown workload 'resnet'/);
    const c4 = capture();
    expect(await main(['bench', '--backend', 'gpu'], c4.io)).toBe(2);
    expect(c4.err()).toMatch(/--backend must be one of wasm, cpu, tensorflow, got 'gpu'/);
    const c5 = capture();
    expect(await main(['bench', '--iterations', 'many'], c5.io)).toBe(2);
    expect(c5.err()).toMatch(/--iterations needs an integer/);
    const c6 = capture();
    expect(await main(['bench', '--workers', '0'], c6.io)).toBe(2);
    expect(c6.err()).toMatch(/--workers needs a positive integer, got "0"/);
    const c7 = capture();
    expect(await main(['bench', '--help'], c7.io)).toBe(0);
    expect(c7.out()).toMatch(/onnx_conv4_fwd_batch80,protonet_eval_5w1s_600ep_onnx,workers_fomaml_5w1s_metabatch4_1step,.*\[--workers N\]/);
  });

  it('a learner row: the optim FOMAML learner (engine onnxruntime) stepping a meta-batch of 4 on 2 worker threads', async () => {
    const c = capture();
    expect(await main(['bench', '--json', '--no-torch', '--workers', '2', '--workloads', 'workers_fomaml_5w1s_metabatch4_1step', '--iterations', '1', '--warmup', '0'], c.io), c.err()).toBe(0);
    const rows = c.out().trim().split('\n').map((l) => JSON.parse(l));
    expect(rows).toEqual([expect.objectContaining({ workload: 'workers_fomaml_5w1s_metabatch4_1step', backend: 'onnxruntime-graph, 2 workers', torch_workload: 'fomaml_5w1s_metabatch4_1step' })]);
    expect(rows[0].ms).toBeGreaterThan(0);
  }, 120_000);
});
