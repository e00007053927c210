import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, isAbsolute, join, resolve } from 'node:path';
import { cacheFile, hashKey, readCache, resolveCacheDir, writeCache, type CacheOption } from './cache.js';
import { PackedDataset, type ClassInfo } from './dataset.js';
import { DataError, briefCause } from './errors.js';
import { loadImageFloat } from './image.js';

export interface ImageFolderOptions {
  /** root/<class>/*.{png,jpg,jpeg}; with `csv`, the folder the CSV file names are relative to */
  root: string;
  /** output size: a side length, or [height, width] */
  size: number | [number, number];
  /** 3 = RGB (default), 1 = grey */
  channels?: 1 | 3;
  /**
   * Ravi & Larochelle / miniImageNet CSV splits `filename,label`: split name -> CSV path. Classes
   * are the labels; files are looked up in `imagesDir` (default root/images if it exists, else root)
   * and then in root/<label>/.
   */
  csv?: Record<string, string>;
  imagesDir?: string;
  /** accepted extensions (default png, jpg, jpeg) */
  extensions?: string[];
  /** keep at most this many items per class (first in name order) */
  maxItemsPerClass?: number;
  /** 1 - v (e.g. dark ink on white paper -> ink = 1) */
  invert?: boolean;
  name?: string;
  cache?: CacheOption;
}

interface Plan {
  classes: string[];
  files: string[][];
  splits: Record<string, number[]> | null;
  stamp: unknown;
}

function planFolders(root: string, exts: Set<string>, max: number): Plan {
  const dirs = readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort();
  const classes: string[] = [];
  const files: string[][] = [];
  const stamp: unknown[] = [];
  for (const d of dirs) {
    const cd = join(root, d);
    const fl = readdirSync(cd)
      .filter((f) => exts.has(extname(f).slice(1).toLowerCase()))
      .sort()
      .slice(0, max)
      .map((f) => join(cd, f));
    if (fl.length === 0) continue;
    classes.push(d);
    files.push(fl);
    stamp.push([d, statSync(cd).mtimeMs, fl.length]);
  }
  if (classes.length === 0) {
    throw new DataError(`image folder ${root}: no class folders with images (expected ${root}/<class>/*.{${[...exts].join(',')}})`, { file: root });
  }
  return { classes, files, splits: null, stamp };
}

function parseCsv(file: string): { line: number; filename: string; label: string }[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`image folder: cannot read split CSV ${file}: ${briefCause(e)}`, { file, cause: e });
  }
  const rows: { line: number; filename: string; label: string }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const cells = line.split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
    if (i === 0 && cells[0]?.toLowerCase() === 'filename') return;
    if (cells.length !== 2 || !cells[0] || !cells[1]) {
      throw new DataError(`${file} line ${i + 1}: expected 'filename,label', got '${line}'`, { file, line: i + 1, expected: 'filename,label' });
    }
    rows.push({ line: i + 1, filename: cells[0], label: cells[1] });
  });
  return rows;
}

function planCsv(root: string, csv: Record<string, string>, imagesDir: string | undefined, max: number): Plan {
  const imgDir = imagesDir ?? (existsSync(join(root, 'images')) ? join(root, 'images') : root);
  const byLabel = new Map<string, string[]>();
  const splitLabels: Record<string, Set<string>> = {};
  const stamp: unknown[] = [];
  for (const [split, f] of Object.entries(csv)) {
    const path = isAbsolute(f) ? f : existsSync(f) ? f : join(root, f);
    const rows = parseCsv(path);
    const st = statSync(path);
    stamp.push([split, resolve(path), st.mtimeMs, st.size]);
    splitLabels[split] = new Set();
    for (const r of rows) {
      const cands = [join(imgDir, r.filename), join(root, r.label, r.filename)];
      const found = cands.find((c) => existsSync(c));
      if (!found) {
        throw new DataError(`${path} line ${r.line}: image '${r.filename}' not found (looked in ${cands.join(' and ')})`, { file: path, line: r.line });
      }
      splitLabels[split]!.add(r.label);
      let l = byLabel.get(r.label);
      if (!l) byLabel.set(r.label, (l = []));
      if (l.length < max) l.push(found);
    }
  }
  const classes = [...byLabel.keys()].sort();
  const index = new Map(classes.map((c, i) => [c, i]));
  const splits: Record<string, number[]> = {};
  for (const [s, labels] of Object.entries(splitLabels)) splits[s] = [...labels].map((l) => index.get(l)!).sort((a, b) => a - b);
  splits['all'] = classes.map((_, i) => i);
  return { classes, files: classes.map((c) => byLabel.get(c)!), splits, stamp };
}

/** Load `root/<class>/*.{png,jpg}` (or a CSV-listed image set), resized, RGB or grey. */
export async function loadImageFolder(opts: ImageFolderOptions): Promise<PackedDataset> {
  if (!opts || typeof opts.root !== 'string') throw new DataError(`image folder: option 'root' (a folder) is required`);
  const root = opts.root;
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new DataError(`image folder: missing folder ${root} (expected ${root}/<class>/*.png|jpg)`, { file: root });
  }
  const [h, w] = typeof opts.size === 'number' ? [opts.size, opts.size] : opts.size ?? [];
  if (!Number.isInteger(h) || !Number.isInteger(w) || h! < 1 || w! < 1) {
    throw new DataError(`image folder: size = ${JSON.stringify(opts.size)}, expected a positive integer or [height, width]`);
  }
  const channels = opts.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw new DataError(`image folder: channels = ${channels}, expected 1 or 3`);
  const exts = new Set((opts.extensions ?? ['png', 'jpg', 'jpeg']).map((e) => e.replace(/^\./, '').toLowerCase()));
  const max = opts.maxItemsPerClass ?? Infinity;
  const plan = opts.csv ? planCsv(root, opts.csv, opts.imagesDir, max) : planFolders(root, exts, max);
  const name = opts.name ?? `image-folder:${root}`;
  const featureSize = h! * w! * channels;
  const cacheDir = resolveCacheDir(opts.cache);
  const key = hashKey({ v: 1, type: 'image-folder', root: resolve(root), rootMtime: statSync(root).mtimeMs, stamp: plan.stamp, h, w, channels, invert: !!opts.invert, max: Number.isFinite(max) ? max : null, exts: [...exts].sort() });
  const file = cacheDir ? cacheFile(cacheDir, 'imagefolder', key) : '';
  const classStart = new Int32Array(plan.classes.length + 1);
  plan.files.forEach((f, i) => (classStart[i + 1] = classStart[i]! + f.length));
  const classes: ClassInfo[] = plan.classes.map((c) => ({ name: c }));
  const hit = cacheDir ? readCache(file, key) : null;
  let data: Uint8Array;
  if (hit && hit.arrays['images'] instanceof Uint8Array && hit.arrays['images'].length === classStart[plan.classes.length]! * featureSize) {
    data = hit.arrays['images'];
  } else {
    data = new Uint8Array(classStart[plan.classes.length]! * featureSize);
    let k = 0;
    for (const list of plan.files) {
      for (const f of list) {
        let buf: Buffer;
        try {
          buf = readFileSync(f);
        } catch (e) {
          throw new DataError(`image folder: cannot read ${f}: ${briefCause(e)}`, { file: f, cause: e });
        }
        const img = loadImageFloat(buf, f, { height: h!, width: w!, channels, invert: !!opts.invert });
        const off = k * featureSize;
        for (let i = 0; i < featureSize; i++) data[off + i] = Math.round(Math.min(1, Math.max(0, img[i]!)) * 255);
        k++;
      }
    }
    if (cacheDir) {
      try {
        writeCache(file, key, { classes: plan.classes }, { images: data });
      } catch (e) {
        process.emitWarning(`metalearn: could not write cache ${file}: ${briefCause(e)}`);
      }
    }
  }
  const init = { name, featureShape: [h!, w!, channels], data, scale: 1 / 255, classStart, classes };
  return new PackedDataset(plan.splits ? { ...init, splits: plan.splits } : init);
}
