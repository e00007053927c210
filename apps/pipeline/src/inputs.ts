import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadImageFloat } from '@metalearn/data';

/** How images are turned into model inputs: [height, width, channels] floats in [0, 1]. */
export interface Preprocess {
  height: number;
  width: number;
  channels: 1 | 3;
  invert: boolean;
}

/** A batch of examples: `x` is [n, ...shape] flattened. */
export interface ExampleBatch {
  x: Float32Array;
  n: number;
  shape: number[];
  /** where each example came from (file, or file#index) */
  sources: string[];
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

export function isImageFile(f: string): boolean {
  return IMAGE_EXT.has(path.extname(f).toLowerCase());
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The preprocessing implied by an example shape (images are [H, W, 1|3]). */
export function imagePreprocess(shape: readonly number[], invert: boolean, what: string): Preprocess {
  const [h, w, c] = shape;
  if (shape.length !== 3 || (c !== 1 && c !== 3)) {
    throw new Error(`${what} takes examples of shape [${shape}], not images [height, width, 1|3]; give the inputs as a .json or .npy float file instead`);
  }
  return { height: h!, width: w!, channels: c, invert };
}

/** Load image files into one batch of [H, W, C] floats. Errors name the file. */
export function loadImages(files: readonly string[], pre: Preprocess): ExampleBatch {
  const per = pre.height * pre.width * pre.channels;
  const x = new Float32Array(files.length * per);
  files.forEach((f, i) => {
    let buf: Uint8Array;
    try {
      buf = new Uint8Array(fs.readFileSync(f));
    } catch (e) {
      throw new Error(`${f}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    let v: Float32Array;
    try {
      v = loadImageFloat(buf, f, pre);
    } catch (e) {
      const m = (e as Error).message;
      throw new Error(m.includes(f) ? m : `${f}: ${m}`);
    }
    x.set(v, i * per);
  });
  return { x, n: files.length, shape: [pre.height, pre.width, pre.channels], sources: [...files] };
}

function flatten(v: unknown, where: string, out: number[], shape: number[], depth: number): void {
  if (Array.isArray(v)) {
    if (shape.length <= depth) shape.push(v.length);
    else if (shape[depth] !== v.length) throw new Error(`${where}: ragged array (length ${v.length}, expected ${shape[depth]})`);
    v.forEach((e, i) => flatten(e, `${where}[${i}]`, out, shape, depth + 1));
  } else if (typeof v === 'number' && Number.isFinite(v)) {
    if (shape.length !== depth) throw new Error(`${where}: expected an array, got a number`);
    out.push(v);
  } else throw new Error(`${where}: expected a finite number or an array, got ${JSON.stringify(v)}`);
}

/** A nested numeric JSON array -> flat data + shape. */
export function nestedToFlat(v: unknown, where: string): { data: Float32Array; shape: number[] } {
  const out: number[] = [];
  const shape: number[] = [];
  flatten(v, where, out, shape, 0);
  return { data: Float32Array.from(out), shape };
}

/**
 * Parse a NumPy .npy file (format 1.x/2.x/3.x, C order, little-endian float32/float64/int).
 */
export function readNpy(file: string): { data: Float32Array; shape: number[] } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file (magic bytes missing)`);
  const major = buf[6]!;
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  if (hstart + hlen > buf.length) throw new Error(`${file}: truncated .npy header`);
  const header = buf.toString('latin1', hstart, hstart + hlen);
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeTxt = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeTxt === undefined) throw new Error(`${file}: malformed .npy header ${JSON.stringify(header.trim())}`);
  if (fortran === 'True') throw new Error(`${file}: field 'fortran_order' is True; save the array in C order`);
  const shape = shapeTxt
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const types: Record<string, [number, (b: Buffer, o: number) => number]> = {
    '<f4': [4, (b, o) => b.readFloatLE(o)],
    '<f8': [8, (b, o) => b.readDoubleLE(o)],
    '<i4': [4, (b, o) => b.readInt32LE(o)],
    '<i8': [8, (b, o) => Number(b.readBigInt64LE(o))],
    '|u1': [1, (b, o) => b.readUInt8(o)],
    '<u1': [1, (b, o) => b.readUInt8(o)],
  };
  const t = types[descr];
  if (!t) throw new Error(`${file}: field 'descr' is '${descr}'; supported: ${Object.keys(types).join(', ')}`);
  const n = size(shape);
  const off = hstart + hlen;
  if (buf.length - off < n * t[0]) throw new Error(`${file}: has ${Math.floor((buf.length - off) / t[0])} values, shape (${shape}) needs ${n}`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = t[1](buf, off + i * t[0]);
  return { data, shape };
}

/**
 * Read a float file of examples: `.npy`, or `.json` holding a nested array `[n, ...shape]`, or
 * `{ "shape": [n, ...], "data": [flat] }`, or `{ "x": nested, ... }`. The result is checked
 * against `exampleShape` (a single example without the batch axis is accepted too).
 */
export function readFloatFile(file: string, exampleShape: readonly number[]): ExampleBatch {
  let arr: { data: Float32Array; shape: number[] };
  if (file.toLowerCase().endsWith('.npy')) arr = readNpy(file);
  else {
    let obj: unknown;
    try {
      obj = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `not valid JSON (${(e as Error).message})`}`);
    }
    if (Array.isArray(obj)) arr = nestedToFlat(obj, file);
    else if (obj && typeof obj === 'object' && 'data' in obj) {
      const o = obj as { shape?: unknown; data?: unknown };
      if (!Array.isArray(o.shape) || !o.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`${file}: field 'shape' must be an array of non-negative integers`);
      const flat = nestedToFlat(o.data, `${file}: field 'data'`);
      if (flat.data.length !== size(o.shape as number[])) throw new Error(`${file}: field 'data' has ${flat.data.length} values, field 'shape' [${o.shape}] needs ${size(o.shape as number[])}`);
      arr = { data: flat.data, shape: o.shape as number[] };
    } else if (obj && typeof obj === 'object' && 'x' in obj) arr = nestedToFlat((obj as { x: unknown }).x, `${file}: field 'x'`);
    else throw new Error(`${file}: expected a nested number array, {"shape", "data"} or {"x"}`);
  }
  const per = size(exampleShape);
  let shape = arr.shape;
  if (shape.join('x') === exampleShape.join('x')) shape = [1, ...shape];
  // also accept [n, prod(exampleShape)] (flattened examples)
  const ok = shape.length >= 1 && (shape.slice(1).join('x') === exampleShape.join('x') || (shape.length === 2 && shape[1] === per));
  if (!ok) throw new Error(`${file}: examples have shape [${shape.slice(1)}] (array [${arr.shape}]), the model takes [${exampleShape}]`);
  const n = shape[0]!;
  return { x: arr.data, n, shape: [...exampleShape], sources: Array.from({ length: n }, (_, i) => `${file}#${i}`) };
}
