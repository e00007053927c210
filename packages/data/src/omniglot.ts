import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Rng } from '@metalearn/core';
import { cacheFile, hashKey, readCache, resolveCacheDir, writeCache, type CacheOption } from './cache.js';
import { checkClass, computeFingerprint, type ClassDataset, type ClassInfo } from './dataset.js';
import { DataError, briefCause } from './errors.js';
import { loadImageFloat } from './image.js';
import { readZipEntries } from './zip.js';

export type OmniglotSet = 'background' | 'evaluation';
export type OmniglotSplit = 'vinyals' | 'maml' | 'lake';

export interface OmniglotOptions {
  /** folder holding images_background/ and images_evaluation/ (folders or the original .zip files) */
  root: string;
  /** output side length (default 28) */
  size?: number;
  /** 0/90/180/270 degree rotations as new classes (default true) */
  rotations?: boolean;
  /** which split scheme gives the train/val/test splits (default 'vinyals') */
  split?: OmniglotSplit;
  /** seed of the MAML random 1200/423 character split (default 0) */
  splitSeed?: number;
  /** folder with the Vinyals split lists train.txt/val.txt/test.txt (default <root>/splits-vinyals) */
  splitsDir?: string;
  /** which of Lake's two sets to load (default both) */
  sets?: OmniglotSet[];
  /** only these alphabets (default all) */
  alphabets?: string[];
  /** binary cache: true/undefined = default folder, string = folder, false = off */
  cache?: CacheOption;
}

interface CharMeta {
  set: OmniglotSet;
  alphabet: string;
  character: string;
  count: number;
}

const LAYOUT = "Lake's layout images_{background,evaluation}/<Alphabet>/characterNN/*.png or images_{background,evaluation}.zip";
const ROT_NAMES = ['rot000', 'rot090', 'rot180', 'rot270'];

interface Source {
  set: OmniglotSet;
  kind: 'dir' | 'zip';
  path: string;
}

function findSource(root: string, set: OmniglotSet): Source {
  const dir = join(root, `images_${set}`);
  if (existsSync(dir) && statSync(dir).isDirectory()) return { set, kind: 'dir', path: dir };
  const zip = `${dir}.zip`;
  if (existsSync(zip)) return { set, kind: 'zip', path: zip };
  throw new DataError(`Omniglot: missing folder ${dir} (and no ${zip}); expected ${LAYOUT}`, { file: dir, expected: LAYOUT });
}

function sortedDirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort();
}

/** Stat-based fingerprint of the sources: folder mtimes down to character level, zip mtime + size. */
function sourceStamp(src: Source, alphabets: Set<string> | null): unknown {
  const st = statSync(src.path);
  if (src.kind === 'zip') return { path: resolve(src.path), mtime: st.mtimeMs, size: st.size };
  const alph = sortedDirs(src.path).filter((a) => !alphabets || alphabets.has(a));
  return {
    path: resolve(src.path),
    alphabets: alph.map((a) => {
      const ad = join(src.path, a);
      return [a, statSync(ad).mtimeMs, sortedDirs(ad).map((c) => [c, statSync(join(ad, c)).mtimeMs])];
    }),
  };
}

function encodeInk(buf: Uint8Array, file: string, size: number, out: Uint8Array, off: number): void {
  const f = loadImageFloat(buf, file, { height: size, width: size, channels: 1, invert: true });
  for (let i = 0; i < f.length; i++) out[off + i] = Math.round(Math.min(1, Math.max(0, f[i]!)) * 255);
}

async function decodeSource(src: Source, size: number, alphabets: Set<string> | null): Promise<{ chars: CharMeta[]; images: Uint8Array[] }> {
  const chars: CharMeta[] = [];
  const images: Uint8Array[] = [];
  const px = size * size;
  if (src.kind === 'dir') {
    const alph = sortedDirs(src.path).filter((a) => !alphabets || alphabets.has(a));
    for (const a of alph) {
      const ad = join(src.path, a);
      const charDirs = sortedDirs(ad);
      if (charDirs.length === 0) {
        throw new DataError(`Omniglot: alphabet folder ${ad} has no characterNN folders (expected ${LAYOUT})`, { file: ad });
      }
      for (const c of charDirs) {
        const cd = join(ad, c);
        const files = readdirSync(cd).filter((f) => f.toLowerCase().endsWith('.png')).sort();
        if (files.length === 0) throw new DataError(`Omniglot: no PNG files in ${cd} (expected ${LAYOUT})`, { file: cd });
        const out = new Uint8Array(files.length * px);
        files.forEach((f, i) => {
          const file = join(cd, f);
          let buf: Buffer;
          try {
            buf = readFileSync(file);
          } catch (e) {
            throw new DataError(`Omniglot: cannot read ${file}: ${briefCause(e)}`, { file, cause: e });
          }
          encodeInk(buf, file, size, out, i * px);
        });
        chars.push({ set: src.set, alphabet: a, character: c, count: files.length });
        images.push(out);
      }
    }
    return { chars, images };
  }
  // zip: entries .../<Alphabet>/<characterNN>/<file>.png, any leading folders
  const entries = await readZipEntries(src.path, (n) => n.toLowerCase().endsWith('.png') && !n.startsWith('__MACOSX'));
  const groups = new Map<string, { alphabet: string; character: string; files: [string, Buffer][] }>();
  for (const [name, buf] of entries) {
    const parts = name.split('/').filter(Boolean);
    if (parts.length < 3) throw new DataError(`Omniglot: zip entry ${name} in ${src.path} is not <Alphabet>/<characterNN>/<file>.png`, { file: src.path });
    const [alphabet, character, fname] = parts.slice(-3) as [string, string, string];
    if (alphabets && !alphabets.has(alphabet)) continue;
    const key = `${alphabet}/${character}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { alphabet, character, files: [] }));
    g.files.push([fname, buf]);
  }
  const keys = [...groups.keys()].sort((x, y) => {
    const [ax, cx] = x.split('/') as [string, string];
    const [ay, cy] = y.split('/') as [string, string];
    return ax < ay ? -1 : ax > ay ? 1 : cx < cy ? -1 : cx > cy ? 1 : 0;
  });
  for (const k of keys) {
    const g = groups.get(k)!;
    g.files.sort((p, q) => (p[0] < q[0] ? -1 : p[0] > q[0] ? 1 : 0));
    const out = new Uint8Array(g.files.length * px);
    g.files.forEach(([fname, buf], i) => encodeInk(buf, `${src.path}:${g.alphabet}/${g.character}/${fname}`, size, out, i * px));
    chars.push({ set: src.set, alphabet: g.alphabet, character: g.character, count: g.files.length });
    images.push(out);
  }
  return { chars, images };
}

/**
 * Omniglot (Lake et al. 2015). Stored once per character at uint8 (ink = 1 after scaling);
 * rotated classes are produced on read (np.rot90 direction, counter-clockwise).
 */
export class OmniglotDataset implements ClassDataset {
  readonly kind = 'classification' as const;
  readonly name: string;
  readonly featureShape: readonly number[];
  readonly featureSize: number;
  readonly numClasses: number;
  readonly rotations: number;
  readonly size: number;
  readonly splits: Readonly<Record<string, readonly number[]>>;
  private readonly charStart: Int32Array;
  private fp: string | null = null;
  /** true when the features came from the binary cache */
  readonly fromCache: boolean;

  constructor(
    readonly chars: readonly CharMeta[],
    readonly data: Uint8Array,
    opts: { size: number; rotations: boolean; splits: Record<string, number[]>; fromCache: boolean },
  ) {
    this.name = 'omniglot';
    this.size = opts.size;
    this.featureShape = Object.freeze([opts.size, opts.size, 1]);
    this.featureSize = opts.size * opts.size;
    this.rotations = opts.rotations ? 4 : 1;
    this.numClasses = chars.length * this.rotations;
    this.charStart = new Int32Array(chars.length + 1);
    chars.forEach((c, i) => (this.charStart[i + 1] = this.charStart[i]! + c.count));
    this.splits = opts.splits;
    this.fromCache = opts.fromCache;
  }

  /** class id of (character index, rotation index 0..3) */
  classOf(charIndex: number, rot: number): number {
    return charIndex * this.rotations + rot;
  }

  itemCount(cls: number): number {
    const ch = Math.floor(cls / this.rotations);
    return this.charStart[ch + 1]! - this.charStart[ch]!;
  }

  classInfo(cls: number): ClassInfo {
    checkClass(this, cls);
    const ch = this.chars[Math.floor(cls / this.rotations)]!;
    const rot = (cls % this.rotations) * 90;
    return {
      name: `${ch.alphabet}/${ch.character}/${ROT_NAMES[rot / 90]}`,
      alphabet: ch.alphabet,
      character: ch.character,
      rotation: rot,
      set: ch.set,
    };
  }

  get fingerprint(): string {
    if (this.fp === null) {
      const cls = Array.from({ length: this.numClasses }, (_, i) => ({ name: this.classInfo(i).name, count: this.itemCount(i) }));
      this.fp = computeFingerprint(this.name, cls, this.featureShape);
    }
    return this.fp;
  }

  readItem(cls: number, item: number, out: Float32Array, offset = 0): void {
    if (!(cls >= 0 && cls < this.numClasses && Number.isInteger(cls))) checkClass(this, cls);
    const ch = Math.floor(cls / this.rotations);
    const n = this.charStart[ch + 1]! - this.charStart[ch]!;
    if (!Number.isInteger(item) || item < 0 || item >= n) {
      throw new DataError(`omniglot: item ${item} out of range for class ${cls} ('${this.classInfo(cls).name}', ${n} items)`);
    }
    const base = (this.charStart[ch]! + item) * this.featureSize;
    const d = this.data;
    const lut = U8_TO_FLOAT;
    const n2 = this.featureSize;
    const rot = cls % this.rotations;
    if (rot === 0) {
      for (let i = 0; i < n2; i++) out[offset + i] = lut[d[base + i]!]!;
      return;
    }
    const map = this.rotationMap(rot);
    for (let i = 0; i < n2; i++) out[offset + i] = lut[d[base + map[i]!]!]!;
  }

  private maps: (Int32Array | undefined)[] = [];

  /** source pixel of each output pixel for k*90 degrees counter-clockwise (numpy.rot90) */
  private rotationMap(rot: number): Int32Array {
    let m = this.maps[rot];
    if (!m) {
      const S = this.size;
      m = new Int32Array(S * S);
      for (let i = 0; i < S; i++) {
        for (let j = 0; j < S; j++) {
          m[i * S + j] = rot === 1 ? j * S + (S - 1 - i) : rot === 2 ? (S - 1 - i) * S + (S - 1 - j) : (S - 1 - j) * S + i;
        }
      }
      this.maps[rot] = m;
    }
    return m;
  }
}

const U8_TO_FLOAT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

function parseVinyals(
  file: string,
  charIndex: Map<string, number>,
  rotations: number,
  partial: boolean,
): number[] {
  const lines = readFileSync(file, 'utf8').split(/\r?\n/);
  const out: number[] = [];
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const m = /^(.+)\/(character\d+)\/rot(\d{3})$/.exec(line);
    if (!m) {
      throw new DataError(`${file} line ${i + 1}: '${line}' is not Alphabet/characterNN/rotDDD`, { file, line: i + 1, expected: 'Alphabet/characterNN/rotDDD' });
    }
    const deg = Number(m[3]);
    if (deg % 90 !== 0 || deg >= 360) throw new DataError(`${file} line ${i + 1}: rotation ${deg} is not 0, 90, 180 or 270`, { file, line: i + 1 });
    const ch = charIndex.get(`${m[1]}/${m[2]}`);
    if (ch === undefined) {
      if (partial) return;
      throw new DataError(`${file} line ${i + 1}: character ${m[1]}/${m[2]} is not in the loaded Omniglot data`, { file, line: i + 1 });
    }
    const r = deg / 90;
    if (r >= rotations) return;
    out.push(ch * rotations + r);
  });
  return out;
}

function buildSplits(chars: readonly CharMeta[], o: Required<Pick<OmniglotOptions, 'split' | 'splitSeed' | 'rotations'>> & { splitsDir: string; partial: boolean }): Record<string, number[]> {
  const R = o.rotations ? 4 : 1;
  const expand = (charIds: number[]) => charIds.sort((a, b) => a - b).flatMap((c) => Array.from({ length: R }, (_, r) => c * R + r));
  const all = chars.map((_, i) => i);
  const splits: Record<string, number[]> = {};
  splits['lake/train'] = expand(all.filter((i) => chars[i]!.set === 'background'));
  splits['lake/test'] = expand(all.filter((i) => chars[i]!.set === 'evaluation'));
  const order = new Rng(`omniglot-maml/${o.splitSeed}`).shuffle([...all]);
  const nTrain = chars.length === 1623 ? 1200 : Math.round((chars.length * 1200) / 1623);
  splits['maml/train'] = expand(order.slice(0, nTrain));
  splits['maml/test'] = expand(order.slice(nTrain));
  const files = ['train', 'val', 'test', 'trainval'].map((s) => [s, join(o.splitsDir, `${s}.txt`)] as const);
  const haveVinyals = files.slice(0, 3).every(([, f]) => existsSync(f));
  if (haveVinyals) {
    const index = new Map(chars.map((c, i) => [`${c.alphabet}/${c.character}`, i]));
    for (const [s, f] of files) if (existsSync(f)) splits[`vinyals/${s}`] = parseVinyals(f, index, R, o.partial).sort((a, b) => a - b);
  } else if (o.split === 'vinyals') {
    throw new DataError(
      `Omniglot: split 'vinyals' needs ${join(o.splitsDir, 'train.txt')}, val.txt and test.txt (lines Alphabet/characterNN/rotDDD); ` +
        `set splitsDir, or use split: 'lake' or 'maml'`,
      { file: join(o.splitsDir, 'train.txt') },
    );
  }
  for (const s of ['train', 'val', 'test', 'trainval']) {
    const v = splits[`${o.split}/${s}`];
    if (v) splits[s] = v;
  }
  return splits;
}

/** Load Omniglot from Lake's folders or zip files (cached after the first load). */
export async function loadOmniglot(opts: OmniglotOptions): Promise<OmniglotDataset> {
  if (!opts || typeof opts.root !== 'string') throw new DataError(`Omniglot: option 'root' (a folder) is required`);
  const root = opts.root;
  if (!existsSync(root)) {
    throw new DataError(`Omniglot: missing folder ${root} (expected ${LAYOUT})`, { file: root, expected: LAYOUT });
  }
  const size = opts.size ?? 28;
  if (!Number.isInteger(size) || size < 1) throw new DataError(`Omniglot: size = ${size}, expected a positive integer`);
  const sets = opts.sets ?? ['background', 'evaluation'];
  const alphabets = opts.alphabets ? new Set(opts.alphabets) : null;
  const sources = sets.map((s) => findSource(root, s));
  const cacheDir = resolveCacheDir(opts.cache);
  const key = cacheDir
    ? hashKey({ v: 1, type: 'omniglot', size, sets, alphabets: opts.alphabets ? [...opts.alphabets].sort() : null, sources: sources.map((s) => sourceStamp(s, alphabets)) })
    : '';
  let chars: CharMeta[] | null = null;
  let data: Uint8Array | null = null;
  let fromCache = false;
  const file = cacheDir ? cacheFile(cacheDir, 'omniglot', key) : '';
  if (cacheDir) {
    const hit = readCache(file, key);
    if (hit && hit.arrays['images'] instanceof Uint8Array) {
      chars = (hit.meta as { chars: CharMeta[] }).chars;
      data = hit.arrays['images'];
      fromCache = true;
    }
  }
  if (!chars || !data) {
    chars = [];
    const parts: Uint8Array[] = [];
    for (const s of sources) {
      const r = await decodeSource(s, size, alphabets);
      chars.push(...r.chars);
      parts.push(...r.images);
    }
    if (alphabets) {
      const found = new Set(chars.map((c) => c.alphabet));
      const missing = [...alphabets].filter((a) => !found.has(a));
      if (missing.length) {
        throw new DataError(`Omniglot: alphabet(s) ${missing.join(', ')} not found under ${root} (sets: ${sets.join(', ')})`, { file: root });
      }
    }
    if (chars.length === 0) throw new DataError(`Omniglot: no characters found under ${root} (expected ${LAYOUT})`, { file: root });
    const total = parts.reduce((a, p) => a + p.length, 0);
    data = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      data.set(p, off);
      off += p.length;
    }
    if (cacheDir) {
      try {
        writeCache(file, key, { chars }, { images: data });
      } catch (e) {
        process.emitWarning(`metalearn: could not write cache ${file}: ${briefCause(e)}`);
      }
    }
  }
  const rotations = opts.rotations ?? true;
  const splits = buildSplits(chars, {
    split: opts.split ?? 'vinyals',
    splitSeed: opts.splitSeed ?? 0,
    rotations,
    splitsDir: opts.splitsDir ?? join(root, 'splits-vinyals'),
    partial: alphabets !== null || sets.length < 2,
  });
  return new OmniglotDataset(chars, data, { size, rotations, splits, fromCache });
}
