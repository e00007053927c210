import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import pngjs from 'pngjs';
import { loadOmniglot, DataError, decodePng, resizeImage } from '../src/index.js';
import { OMNIGLOT, haveOmniglot, tempDir, writeZip } from './helpers.js';

const ALPHABETS = ['Latin', 'Angelic'];

describe.skipIf(!haveOmniglot)('Omniglot on ../shared/data/omniglot', () => {
  if (!haveOmniglot) console.warn(`skipping Omniglot tests: ${OMNIGLOT} not found`);
  let tmp: ReturnType<typeof tempDir>;
  beforeAll(() => (tmp = tempDir()));
  afterAll(() => tmp.cleanup());

  it('loads two alphabets, ink = 1, rotations as classes, cache round trip', async () => {
    const t0 = performance.now();
    const a = await loadOmniglot({ root: OMNIGLOT, alphabets: ALPHABETS, cache: tmp.dir });
    const cold = performance.now() - t0;
    expect(a.fromCache).toBe(false);
    // Latin has 26 characters (background), Angelic 20 (evaluation)
    expect(a.chars.length).toBe(46);
    expect(a.numClasses).toBe(46 * 4);
    expect(a.featureShape).toEqual([28, 28, 1]);
    expect(a.itemCount(0)).toBe(20);
    const info = a.classInfo(1);
    // background set first: class 0..3 = Latin/character01 at 0/90/180/270 degrees
    expect(info).toMatchObject({ name: 'Latin/character01/rot090', alphabet: 'Latin', character: 'character01', rotation: 90, set: 'background' });
    expect(a.classInfo(26 * 4).name).toBe('Angelic/character01/rot000');
    const x = new Float32Array(784);
    a.readItem(0, 0, x);
    const ink = x.reduce((s, v) => s + v, 0) / 784;
    // strokes are a small part of the image: mostly 0 (background), some near 1
    expect(ink).toBeGreaterThan(0.02);
    expect(ink).toBeLessThan(0.35);
    expect(Math.max(...x)).toBeGreaterThan(0.9);
    expect(Math.min(...x)).toBe(0);

    // matches a direct decode + area resize of the PNG (within uint8 storage precision)
    const dir = join(OMNIGLOT, 'images_background', 'Latin', 'character01');
    const f = readdirSync(dir).sort()[0]!;
    const img = decodePng(readFileSync(join(dir, f)));
    const ref = resizeImage(Float32Array.from(img.data, (v) => 1 - v / 255), 105, 105, 1, 28, 28, 'area');
    for (let i = 0; i < 784; i++) expect(Math.abs(x[i]! - ref[i]!)).toBeLessThan(0.5 / 255 + 1e-6);

    // rotations: class 1 is rot090 (counter-clockwise) of class 0
    const r = new Float32Array(784);
    a.readItem(1, 0, r);
    for (let i = 0; i < 28; i++) for (let j = 0; j < 28; j++) expect(r[i * 28 + j]).toBe(x[j * 28 + (27 - i)]);
    a.readItem(2, 0, r);
    for (let i = 0; i < 28; i++) for (let j = 0; j < 28; j++) expect(r[i * 28 + j]).toBe(x[(27 - i) * 28 + (27 - j)]);

    const t1 = performance.now();
    const b = await loadOmniglot({ root: OMNIGLOT, alphabets: ALPHABETS, cache: tmp.dir });
    const warm = performance.now() - t1;
    expect(b.fromCache).toBe(true);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(Buffer.from(b.data).equals(Buffer.from(a.data))).toBe(true);
    expect(warm).toBeLessThan(cold);
  });

  it('splits: Lake by alphabet set, MAML seeded, Vinyals lists; disjoint', async () => {
    const ds = await loadOmniglot({ root: OMNIGLOT, alphabets: ALPHABETS, cache: tmp.dir, split: 'lake' });
    const names = (ids: readonly number[]) => new Set(ids.map((c) => ds.classInfo(c).alphabet));
    expect(names(ds.splits['train']!)).toEqual(new Set(['Latin']));
    expect(names(ds.splits['test']!)).toEqual(new Set(['Angelic']));
    for (const scheme of ['lake', 'maml', 'vinyals']) {
      const parts = Object.keys(ds.splits).filter((k) => k.startsWith(`${scheme}/`) && !k.endsWith('trainval'));
      expect(parts.length).toBeGreaterThanOrEqual(2);
      const seen = new Set<number>();
      for (const p of parts) for (const c of ds.splits[p]!) {
        expect(seen.has(c)).toBe(false);
        seen.add(c);
      }
    }
    // the Vinyals lists mix both folders: Angelic (evaluation) is in train
    const vtrain = ds.splits['vinyals/train']!.map((c) => ds.classInfo(c).name);
    expect(vtrain).toContain('Angelic/character01/rot090');
    const m1 = await loadOmniglot({ root: OMNIGLOT, alphabets: ALPHABETS, cache: tmp.dir, split: 'maml', splitSeed: 3 });
    const m2 = await loadOmniglot({ root: OMNIGLOT, alphabets: ALPHABETS, cache: tmp.dir, split: 'maml', splitSeed: 3 });
    const m3 = await loadOmniglot({ root: OMNIGLOT, alphabets: ALPHABETS, cache: tmp.dir, split: 'maml', splitSeed: 4 });
    expect(m1.splits['train']).toEqual(m2.splits['train']);
    expect(m1.splits['train']).not.toEqual(m3.splits['train']);
    // all four rotations of a character stay in one split
    for (const c of m1.splits['train']!) expect(m1.splits['train']).toContain(c - (c % 4));
  });

  it('loads the original zip layout identically to the folders', async () => {
    const entries: [string, Uint8Array][] = [];
    const base = join(OMNIGLOT, 'images_background', 'Latin');
    for (const c of readdirSync(base).sort().slice(0, 3)) {
      for (const f of readdirSync(join(base, c))) entries.push([`images_background/Latin/${c}/${f}`, readFileSync(join(base, c, f))]);
    }
    const root = join(tmp.dir, 'zipped');
    const folderRoot = join(tmp.dir, 'folder');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'images_background.zip'), writeZip(entries.reverse()));
    for (const c of readdirSync(base).sort().slice(0, 3)) cpSync(join(base, c), join(folderRoot, 'images_background', 'Latin', c), { recursive: true });
    const z = await loadOmniglot({ root, sets: ['background'], split: 'lake', cache: false });
    const d = await loadOmniglot({ root: folderRoot, sets: ['background'], split: 'lake', cache: false });
    expect(z.numClasses).toBe(12);
    expect(z.fingerprint).toBe(d.fingerprint);
    expect(Buffer.from(z.data).equals(Buffer.from(d.data))).toBe(true);
  });
});

describe('Omniglot bad input', () => {
  it('missing folder names the path and the expected layout', async () => {
    const { dir, cleanup } = tempDir();
    try {
      await expect(loadOmniglot({ root: join(dir, 'nope') })).rejects.toThrow(/missing folder .*nope \(expected Lake's layout images_\{background,evaluation\}/);
      await expect(loadOmniglot({ root: dir })).rejects.toThrow(new RegExp(`missing folder ${dir}/images_background`));
    } finally {
      cleanup();
    }
  });

  it('corrupt PNG names the file', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const cd = join(dir, 'images_background', 'Test', 'character01');
      mkdirSync(cd, { recursive: true });
      const png = new pngjs.PNG({ width: 8, height: 8 });
      png.data.fill(255);
      const good = pngjs.PNG.sync.write(png);
      writeFileSync(join(cd, '0001_01.png'), good);
      const bad = Buffer.from(good);
      bad[bad.length - 20] ^= 0xff; // inside IDAT: CRC mismatch
      writeFileSync(join(cd, '0001_02.png'), bad);
      writeFileSync(join(cd, '0001_03.png'), good.subarray(0, 30)); // truncated
      const err = await loadOmniglot({ root: dir, sets: ['background'], split: 'lake', cache: false }).catch((e) => e);
      expect(err).toBeInstanceOf(DataError);
      expect(err.message).toMatch(/corrupt PNG .*character01\/0001_02\.png: .*expected a valid PNG/);
      expect(err.file).toBe(join(cd, '0001_02.png'));
    } finally {
      cleanup();
    }
  });

  it("split 'vinyals' without the list files says what to do", async () => {
    const { dir, cleanup } = tempDir();
    try {
      const cd = join(dir, 'images_background', 'Test', 'character01');
      mkdirSync(cd, { recursive: true });
      const png = new pngjs.PNG({ width: 8, height: 8 });
      png.data.fill(255);
      writeFileSync(join(cd, 'a.png'), pngjs.PNG.sync.write(png));
      await expect(loadOmniglot({ root: dir, sets: ['background'], cache: false })).rejects.toThrow(/splits-vinyals\/train\.txt.*split: 'lake' or 'maml'/);
      const ok = await loadOmniglot({ root: dir, sets: ['background'], cache: false, split: 'maml' });
      expect(ok.numClasses).toBe(4);
      mkdirSync(join(dir, 'splits-vinyals'));
      for (const s of ['train', 'val', 'test']) writeFileSync(join(dir, 'splits-vinyals', `${s}.txt`), 'Test/character01/rot000\nTest/character01\n');
      await expect(loadOmniglot({ root: dir, sets: ['background'], cache: false })).rejects.toThrow(/train\.txt line 2: 'Test\/character01' is not Alphabet\/characterNN\/rotDDD/);
    } finally {
      cleanup();
    }
  });
});
