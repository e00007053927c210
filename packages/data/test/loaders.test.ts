import { describe, expect, it, afterAll } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import pngjs from 'pngjs';
import jpeg from 'jpeg-js';
import { loadImageFolder, loadIdx, parseIdx, parseTs, loadUea, ueaFromParsed, DataError, EpisodeSampler } from '../src/index.js';
import { tempDir, UEA, haveUea } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function pngOf(w: number, h: number, rgb: [number, number, number]): Buffer {
  const p = new pngjs.PNG({ width: w, height: h });
  for (let i = 0; i < w * h; i++) p.data.set([...rgb, 255], i * 4);
  return pngjs.PNG.sync.write(p);
}
function jpgOf(w: number, h: number, rgb: [number, number, number]): Buffer {
  const data = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) data.set([...rgb, 255], i * 4);
  return jpeg.encode({ width: w, height: h, data }, 95).data;
}

describe('image folder', () => {
  const root = join(tmp.dir, 'imgs');
  const colours: Record<string, [number, number, number]> = { cat: [250, 10, 10], dog: [10, 250, 10], emu: [10, 10, 250] };
  for (const [cls, rgb] of Object.entries(colours)) {
    mkdirSync(join(root, cls), { recursive: true });
    for (let i = 0; i < 3; i++) writeFileSync(join(root, cls, `p${i}.png`), pngOf(20 + i, 16, rgb));
    for (let i = 0; i < 2; i++) writeFileSync(join(root, cls, `j${i}.jpg`), jpgOf(12, 24, rgb));
  }
  mkdirSync(join(root, 'empty'));
  writeFileSync(join(root, 'notes.txt'), 'ignored');

  it('loads class folders of PNG + JPEG, resized, RGB or grey, and caches', async () => {
    const cache = join(tmp.dir, 'cache');
    const ds = await loadImageFolder({ root, size: [8, 10], cache });
    expect(ds.numClasses).toBe(3);
    expect(ds.featureShape).toEqual([8, 10, 3]);
    expect([0, 1, 2].map((c) => ds.itemCount(c))).toEqual([5, 5, 5]);
    expect(ds.classInfo(1).name).toBe('dog');
    const x = new Float32Array(240);
    for (let it = 0; it < 5; it++) {
      ds.readItem(1, it, x);
      expect(x[0]).toBeCloseTo(10 / 255, 1);
      expect(x[1]).toBeCloseTo(250 / 255, 1);
      expect(x[239]).toBeCloseTo(10 / 255, 1);
    }
    const again = await loadImageFolder({ root, size: [8, 10], cache });
    expect(Buffer.from(again.data).equals(Buffer.from(ds.data))).toBe(true);
    const grey = await loadImageFolder({ root, size: 4, channels: 1, cache: false });
    expect(grey.featureShape).toEqual([4, 4, 1]);
    const g = new Float32Array(16);
    grey.readItem(0, 0, g);
    expect(g[5]).toBeCloseTo((0.299 * 250 + 0.587 * 10 + 0.114 * 10) / 255, 2);
  });

  it('CSV split (filename,label) in the miniImageNet format', async () => {
    const mroot = join(tmp.dir, 'mini');
    mkdirSync(join(mroot, 'images'), { recursive: true });
    const rows: Record<string, string[]> = { train: [], test: [] };
    for (const [cls, rgb] of Object.entries(colours)) {
      for (let i = 0; i < 4; i++) {
        const f = `${cls}${String(i).padStart(8, '0')}.jpg`;
        writeFileSync(join(mroot, 'images', f), jpgOf(10, 10, rgb));
        rows[cls === 'emu' ? 'test' : 'train']!.push(`${f},${cls}`);
      }
    }
    writeFileSync(join(mroot, 'train.csv'), 'filename,label\n' + rows['train']!.join('\n') + '\n');
    writeFileSync(join(mroot, 'test.csv'), 'filename,label\n' + rows['test']!.join('\n') + '\n');
    const ds = await loadImageFolder({ root: mroot, size: 6, csv: { train: 'train.csv', test: 'test.csv' }, cache: false });
    expect(ds.splits['train']).toEqual([0, 1]);
    expect(ds.splits['test']).toEqual([2]);
    expect(ds.itemCount(2)).toBe(4);
    writeFileSync(join(mroot, 'bad.csv'), 'filename,label\ncat00000000.jpg,cat\nmissing.jpg,cat\n');
    await expect(loadImageFolder({ root: mroot, size: 6, csv: { x: 'bad.csv' }, cache: false })).rejects.toThrow(
      /bad\.csv line 3: image 'missing\.jpg' not found/,
    );
    writeFileSync(join(mroot, 'bad2.csv'), 'filename,label\ncat00000000.jpg\n');
    await expect(loadImageFolder({ root: mroot, size: 6, csv: { x: 'bad2.csv' }, cache: false })).rejects.toThrow(/bad2\.csv line 2: expected 'filename,label'/);
  });

  it('bad input: missing folder, corrupt image, no classes', async () => {
    await expect(loadImageFolder({ root: join(tmp.dir, 'absent'), size: 8 })).rejects.toThrow(/image folder: missing folder .*absent/);
    const broken = join(tmp.dir, 'broken');
    mkdirSync(join(broken, 'a'), { recursive: true });
    writeFileSync(join(broken, 'a', 'ok.png'), pngOf(4, 4, [1, 2, 3]));
    writeFileSync(join(broken, 'a', 'zz.png'), pngOf(4, 4, [1, 2, 3]).subarray(0, 45));
    const err = await loadImageFolder({ root: broken, size: 4, cache: false }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/corrupt PNG .*broken\/a\/zz\.png/);
    const none = join(tmp.dir, 'none');
    mkdirSync(join(none, 'x'), { recursive: true });
    await expect(loadImageFolder({ root: none, size: 4, cache: false })).rejects.toThrow(/no class folders with images/);
  });
});

function idxBytes(type: number, dims: number[], values: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = type;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  const size = type === 0x08 ? 1 : 4;
  const body = Buffer.alloc(values.length * size);
  values.forEach((v, i) => (type === 0x08 ? body.writeUInt8(v, i) : type === 0x0d ? body.writeFloatBE(v, i * 4) : body.writeInt32BE(v, i * 4)));
  return Buffer.concat([head, body]);
}

describe('IDX', () => {
  const n = 7, h = 3, w = 2;
  const labels = [3, 1, 3, 0, 1, 3, 0];
  const pixels = Array.from({ length: n * h * w }, (_, i) => (i * 37) % 256);
  const dir = join(tmp.dir, 'idx');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'img-idx3-ubyte'), idxBytes(0x08, [n, h, w], pixels));
  writeFileSync(join(dir, 'lab-idx1-ubyte.gz'), gzipSync(idxBytes(0x08, [n], labels)));
  writeFileSync(join(dir, 'img-idx3-ubyte.gz'), gzipSync(idxBytes(0x08, [n, h, w], pixels)));
  writeFileSync(join(dir, 'lab-idx1-ubyte'), idxBytes(0x08, [n], labels));

  it('parses plain and gzipped files and groups items by label', async () => {
    const a = parseIdx(idxBytes(0x0d, [2, 2], [1.5, -2, 0.25, 8]), 'f.idx');
    expect(a.dtype).toBe('float32');
    expect(Array.from(a.data)).toEqual([1.5, -2, 0.25, 8]);
    const ds = await loadIdx({ images: join(dir, 'img-idx3-ubyte'), labels: join(dir, 'lab-idx1-ubyte.gz'), cache: join(tmp.dir, 'c2') });
    const dz = await loadIdx({ images: join(dir, 'img-idx3-ubyte.gz'), labels: join(dir, 'lab-idx1-ubyte'), cache: false });
    expect(ds.featureShape).toEqual([3, 2, 1]);
    expect(ds.numClasses).toBe(3);
    expect([0, 1, 2].map((c) => ds.classInfo(c).name)).toEqual(['0', '1', '3']);
    expect([0, 1, 2].map((c) => ds.itemCount(c))).toEqual([2, 2, 3]);
    const x = new Float32Array(6);
    ds.readItem(2, 1, x); // second image with label 3 = image #2
    expect(Array.from(x)).toEqual(pixels.slice(12, 18).map((v) => Math.fround(v * (1 / 255))));
    expect(Buffer.from(dz.data).equals(Buffer.from(ds.data))).toBe(true);
    const cached = await loadIdx({ images: join(dir, 'img-idx3-ubyte'), labels: join(dir, 'lab-idx1-ubyte.gz'), cache: join(tmp.dir, 'c2') });
    expect(cached.fingerprint).toBe(ds.fingerprint);
    // train + test concatenation
    const both = await loadIdx({ images: [join(dir, 'img-idx3-ubyte'), join(dir, 'img-idx3-ubyte.gz')], labels: [join(dir, 'lab-idx1-ubyte'), join(dir, 'lab-idx1-ubyte')], cache: false });
    expect(both.itemCount(2)).toBe(6);
  });

  it('bad input names the file and what was expected', async () => {
    writeFileSync(join(dir, 'short'), idxBytes(0x08, [n, h, w], pixels).subarray(0, 30));
    writeFileSync(join(dir, 'junk.gz'), Buffer.from([0x1f, 0x8b, 1, 2, 3]));
    writeFileSync(join(dir, 'few-labels'), idxBytes(0x08, [n - 1], labels.slice(1)));
    await expect(loadIdx({ images: join(dir, 'short'), labels: join(dir, 'lab-idx1-ubyte'), cache: false })).rejects.toThrow(
      /IDX file .*short: has 14 data bytes, expected 42 for dims \[7, 3, 2\] of uint8/,
    );
    await expect(loadIdx({ images: join(dir, 'junk.gz'), labels: join(dir, 'lab-idx1-ubyte'), cache: false })).rejects.toThrow(/corrupt gzip in IDX file .*junk\.gz/);
    await expect(loadIdx({ images: join(dir, 'img-idx3-ubyte'), labels: join(dir, 'few-labels'), cache: false })).rejects.toThrow(
      /few-labels has 6 labels but .*img-idx3-ubyte has 7 images/,
    );
    expect(() => parseIdx(Buffer.from('PK\u0003\u0004hello'), 'x.idx')).toThrow(/IDX file x\.idx: bad header '50 4b 03 04' \(expected IDX magic/);
    await expect(loadIdx({ images: join(dir, 'nothing'), labels: join(dir, 'nothing'), cache: false })).rejects.toThrow(/IDX file not found: .*nothing/);
  });
});

const TS_EQUAL = `# comment
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true up down
@data
1,2,3,4:10,10,10,10:up
4,3,?,1:0,2,4,6:down
2,4,6,8:1,1,?,?:up
`;
const TS_UNEQUAL = `@problemName Ragged
@dimensions 1
@equalLength false
@classLabel true a b
@data
1,2,3:a
5,6:b
1,2,3,4,5:a
`;

describe('UEA .ts', () => {
  it('parses equal length with missing values; z-normalises per dimension', () => {
    const f = parseTs(TS_EQUAL, 'toy.ts');
    expect(f.problemName).toBe('Toy');
    expect(f.cases).toHaveLength(3);
    expect(Number.isNaN(f.cases[1]!.dims[0]![2]!)).toBe(true);
    const ds = ueaFromParsed([f], {});
    expect(ds.featureShape).toEqual([4, 2]);
    expect(ds.itemCount(0)).toBe(2);
    expect(ds.itemCount(1)).toBe(1);
    const x = new Float32Array(8);
    ds.readItem(0, 0, x);
    // dim 0 = 1,2,3,4 -> mean 2.5, std sqrt(1.25); dim 1 constant -> 0
    const s = Math.sqrt(1.25);
    expect([x[0], x[2], x[4], x[6]].map((v) => v!.toFixed(4))).toEqual([1, 2, 3, 4].map((v) => ((v - 2.5) / s).toFixed(4)));
    expect([x[1], x[3], x[5], x[7]]).toEqual([0, 0, 0, 0]);
    // missing value in the middle is interpolated (after normalisation); trailing ones held
    ds.readItem(1, 0, x);
    const d0 = [x[0]!, x[2]!, x[4]!, x[6]!];
    expect(d0[2]).toBeCloseTo((d0[1]! + d0[3]!) / 2, 5);
    ds.readItem(0, 1, x);
    expect(x[5]).toBeCloseTo(x[3]!, 6);
    expect(x[7]).toBeCloseTo(x[3]!, 6);
  });

  it('unequal length: padded to the longest (or fixed / resampled length)', () => {
    const f = parseTs(TS_UNEQUAL, 'r.ts');
    const ds = ueaFromParsed([f], { normalize: 'none' });
    expect(ds.featureShape).toEqual([5, 1]);
    const x = new Float32Array(5);
    ds.readItem(1, 0, x);
    expect(Array.from(x)).toEqual([5, 6, 0, 0, 0]);
    const r = ueaFromParsed([f], { normalize: 'none', length: 3, resample: true });
    const y = new Float32Array(3);
    r.readItem(0, 1, y);
    expect(Array.from(y)).toEqual([1, 3, 5]);
  });

  it('ragged or malformed lines give file + line + expectation', () => {
    const ragged = TS_EQUAL.replace('2,4,6,8:1,1,?,?:up', '2,4,6:1,1,?,?:up');
    expect(() => parseTs(ragged, 'toy.ts')).toThrow(/toy\.ts line 13: dimension 1 has 3 values, expected 4 \(@equalLength true, @seriesLength 4\)/);
    const dims = TS_EQUAL.replace('4,3,?,1:0,2,4,6:down', '4,3,?,1:down');
    expect(() => parseTs(dims, 'toy.ts')).toThrow(/toy\.ts line 12: case has 1 dimension\(s\), expected 2 \(@dimensions 2\)/);
    const label = TS_EQUAL.replace('10,10,10,10:up', '10,10,10,10:sideways');
    expect(() => parseTs(label, 'toy.ts')).toThrow(/line 11: class label 'sideways' is not one of @classLabel up down/);
    const nan = TS_EQUAL.replace('1,2,3,4:', '1,2,x,4:');
    expect(() => parseTs(nan, 'toy.ts')).toThrow(/line 11: dimension 1, value 3: 'x' is not a number/);
    expect(() => parseTs('@problemName x\n@classLabel true a\n', 'e.ts')).toThrow(/e\.ts: no @data line/);
    let err: any;
    try {
      parseTs(ragged, 'toy.ts');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DataError);
    expect(err.line).toBe(13);
  });

  it('loads files, caches, and rejects missing ones', async () => {
    const d = join(tmp.dir, 'uea', 'Toy');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'Toy_TRAIN.ts'), TS_EQUAL);
    writeFileSync(join(d, 'Toy_TEST.ts'), TS_EQUAL);
    const ds = await loadUea({ root: join(tmp.dir, 'uea'), name: 'Toy', cache: join(tmp.dir, 'c3') });
    expect(ds.itemCount(0)).toBe(4);
    const again = await loadUea({ root: join(tmp.dir, 'uea'), name: 'Toy', cache: join(tmp.dir, 'c3') });
    expect(Array.from(again.data)).toEqual(Array.from(ds.data));
    await expect(loadUea({ root: join(tmp.dir, 'uea'), name: 'Nope' })).rejects.toThrow(/UEA: missing folder .*Nope/);
  });
});

describe.skipIf(!haveUea)('UEA archive at ../shared/data/uea', () => {
  if (!haveUea) console.warn(`skipping UEA archive tests: ${UEA} not found`);
  it('JapaneseVowels (unequal length 7-29) and BasicMotions load and sample', async () => {
    const jv = await loadUea({ root: UEA, name: 'JapaneseVowels', cache: false });
    expect(jv.numClasses).toBe(9);
    expect(jv.featureShape).toEqual([29, 12]);
    expect(Array.from({ length: 9 }, (_, c) => jv.itemCount(c)).reduce((a, b) => a + b)).toBe(640);
    const bm = await loadUea({ root: UEA, name: 'BasicMotions', cache: false });
    expect(bm.featureShape).toEqual([100, 6]);
    const x = new Float32Array(600);
    bm.readItem(0, 0, x);
    let m = 0, q = 0;
    for (let t = 0; t < 100; t++) { m += x[t * 6]!; q += x[t * 6]! ** 2; }
    expect(m / 100).toBeCloseTo(0, 4);
    expect(q / 100).toBeCloseTo(1, 3);
    const d = new EpisodeSampler(bm, undefined, { ways: 3, shots: 5, queries: 5 }, 0).describe(0);
    expect(d.classes).toHaveLength(3);
  });
});
