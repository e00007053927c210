import { existsSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { resolve } from 'node:path';
import { cacheFile, hashKey, readCache, resolveCacheDir, writeCache, type CacheOption } from './cache.js';
import { PackedDataset } from './dataset.js';
import { DataError, briefCause } from './errors.js';

export interface IdxArray {
  dims: number[];
  dtype: 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const TYPES: Record<number, [IdxArray['dtype'], number]> = {
  0x08: ['uint8', 1],
  0x09: ['int8', 1],
  0x0b: ['int16', 2],
  0x0c: ['int32', 4],
  0x0d: ['float32', 4],
  0x0e: ['float64', 8],
};

/** Parse an IDX file (MNIST format), gzipped or not. Values are big-endian in the file. */
export function parseIdx(bytes: Uint8Array, file: string): IdxArray {
  let buf = bytes;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw new DataError(`corrupt gzip in IDX file ${file}: ${briefCause(e)}`, { file, cause: e });
    }
  }
  const want = 'IDX magic 0x00 0x00 <type 08|09|0B|0C|0D|0E> <ndims>';
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0 || !TYPES[buf[2]!] || buf[3] === 0) {
    const got = Array.from(buf.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new DataError(`IDX file ${file}: bad header '${got}' (expected ${want})`, { file, expected: want });
  }
  const [dtype, size] = TYPES[buf[2]!]!;
  const nd = buf[3]!;
  if (buf.length < 4 + 4 * nd) throw new DataError(`IDX file ${file}: truncated header (expected ${nd} dimension sizes)`, { file });
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims = Array.from({ length: nd }, (_, i) => dv.getUint32(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * nd;
  if (buf.length - start !== count * size) {
    throw new DataError(
      `IDX file ${file}: has ${buf.length - start} data bytes, expected ${count * size} for dims [${dims.join(', ')}] of ${dtype}`,
      { file },
    );
  }
  let data: IdxArray['data'];
  switch (dtype) {
    case 'uint8':
      data = buf.slice(start, start + count);
      break;
    case 'int8':
      data = new Int8Array(buf.slice(start, start + count).buffer);
      break;
    default: {
      const arr = dtype === 'int16' ? new Int16Array(count) : dtype === 'int32' ? new Int32Array(count) : dtype === 'float32' ? new Float32Array(count) : new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const o = start + i * size;
        arr[i] = dtype === 'int16' ? dv.getInt16(o) : dtype === 'int32' ? dv.getInt32(o) : dtype === 'float32' ? dv.getFloat32(o) : dv.getFloat64(o);
      }
      data = arr;
    }
  }
  return { dims, dtype, data };
}

function readIdxFile(file: string): IdxArray {
  if (!existsSync(file)) throw new DataError(`IDX file not found: ${file}`, { file });
  return parseIdx(readFileSync(file), file);
}

export interface IdxOptions {
  /** image file(s): [n, H, W] or [n, H, W, C]; several files are concatenated (e.g. train + test) */
  images: string | string[];
  /** label file(s): [n] integers, one per image, same order */
  labels: string | string[];
  name?: string;
  /** multiply values by this (default 1/255 for uint8 images, else 1) */
  scale?: number;
  cache?: CacheOption;
}

/** MNIST / Fashion-MNIST style IDX images + labels as a class dataset (classes = sorted labels). */
export async function loadIdx(opts: IdxOptions): Promise<PackedDataset> {
  const imgFiles = Array.isArray(opts.images) ? opts.images : [opts.images];
  const labFiles = Array.isArray(opts.labels) ? opts.labels : [opts.labels];
  if (imgFiles.length === 0 || imgFiles.length !== labFiles.length) {
    throw new DataError(`IDX: expected as many label files as image files, got ${imgFiles.length} and ${labFiles.length}`);
  }
  for (const f of [...imgFiles, ...labFiles]) if (!existsSync(f)) throw new DataError(`IDX file not found: ${f}`, { file: f });
  const cacheDir = resolveCacheDir(opts.cache);
  const key = hashKey({ v: 1, type: 'idx', files: [...imgFiles, ...labFiles].map((f) => { const s = statSync(f); return [resolve(f), s.mtimeMs, s.size]; }), scale: opts.scale ?? null });
  const cfile = cacheDir ? cacheFile(cacheDir, 'idx', key) : '';
  const name = opts.name ?? `idx:${imgFiles[0]}`;
  const hit = cacheDir ? readCache(cfile, key) : null;
  if (hit) {
    const m = hit.meta as { featureShape: number[]; labels: number[]; scale: number };
    const data = hit.arrays['data'] as Uint8Array | Float32Array;
    return new PackedDataset({ name, featureShape: m.featureShape, data, scale: m.scale, classStart: hit.arrays['classStart'] as Int32Array, classes: m.labels.map((l) => ({ name: String(l), label: l })) });
  }
  let featureShape: number[] | null = null;
  const imgs: IdxArray[] = [];
  const labs: IdxArray[] = [];
  imgFiles.forEach((f, i) => {
    const im = readIdxFile(f);
    const lb = readIdxFile(labFiles[i]!);
    if (im.dims.length < 2 || im.dims.length > 4) throw new DataError(`IDX file ${f}: dims [${im.dims.join(', ')}], expected [n, H, W] or [n, H, W, C]`, { file: f });
    if (lb.dims.length !== 1) throw new DataError(`IDX file ${labFiles[i]}: dims [${lb.dims.join(', ')}], expected [n] labels`, { file: labFiles[i]! });
    if (lb.dims[0] !== im.dims[0]) {
      throw new DataError(`IDX: ${labFiles[i]} has ${lb.dims[0]} labels but ${f} has ${im.dims[0]} images (expected one label per image)`, { file: labFiles[i]! });
    }
    if (lb.dtype === 'float32' || lb.dtype === 'float64') throw new DataError(`IDX file ${labFiles[i]}: labels are ${lb.dtype}, expected integers`, { file: labFiles[i]! });
    const fsh = im.dims.length === 2 ? [im.dims[1]!] : im.dims.length === 3 ? [im.dims[1]!, im.dims[2]!, 1] : im.dims.slice(1);
    if (featureShape && featureShape.join('x') !== fsh.join('x')) {
      throw new DataError(`IDX file ${f}: item shape [${fsh.join(', ')}] differs from [${featureShape.join(', ')}] of ${imgFiles[0]}`, { file: f });
    }
    featureShape = fsh;
    imgs.push(im);
    labs.push(lb);
  });
  const fsz = featureShape!.reduce((a, b) => a * b, 1);
  const allUint8 = imgs.every((i) => i.dtype === 'uint8');
  const scale = opts.scale ?? (allUint8 ? 1 / 255 : 1);
  // group items by label (stable)
  const labelSet = new Set<number>();
  for (const l of labs) for (const v of l.data) labelSet.add(Number(v));
  const labels = [...labelSet].sort((a, b) => a - b);
  const li = new Map(labels.map((l, i) => [l, i]));
  const counts = new Int32Array(labels.length);
  for (const l of labs) for (const v of l.data) counts[li.get(Number(v))!]!++;
  const classStart = new Int32Array(labels.length + 1);
  for (let c = 0; c < labels.length; c++) classStart[c + 1] = classStart[c]! + counts[c]!;
  const total = classStart[labels.length]!;
  const data = allUint8 ? new Uint8Array(total * fsz) : new Float32Array(total * fsz);
  const fill = classStart.slice(0, labels.length);
  imgs.forEach((im, fi) => {
    const lab = labs[fi]!.data;
    for (let i = 0; i < lab.length; i++) {
      const c = li.get(Number(lab[i]))!;
      const dst = fill[c]!++ * fsz;
      const src = i * fsz;
      for (let k = 0; k < fsz; k++) data[dst + k] = im.data[src + k]!;
    }
  });
  if (cacheDir) {
    try {
      writeCache(cfile, key, { featureShape, labels, scale }, { data, classStart });
    } catch (e) {
      process.emitWarning(`metalearn: could not write cache ${cfile}: ${briefCause(e)}`);
    }
  }
  return new PackedDataset({ name, featureShape: featureShape!, data, scale, classStart, classes: labels.map((l) => ({ name: String(l), label: l })) });
}
