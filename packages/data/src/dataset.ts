import { createHash } from 'node:crypto';
import { Rng } from '@metalearn/core';
import { DataError } from './errors.js';

/** What is known about one class: a display name plus loader-specific fields. */
export interface ClassInfo {
  name: string;
  [key: string]: unknown;
}

/**
 * A classification dataset: classes, each with items, all items of one fixed feature shape.
 * Features are decoded once (at load) into one packed array; `readItem` only copies.
 */
export interface ClassDataset {
  readonly kind: 'classification';
  readonly name: string;
  readonly numClasses: number;
  /** shape of one example: [H, W, C] for images, [length, channels] for series */
  readonly featureShape: readonly number[];
  /** product of featureShape */
  readonly featureSize: number;
  /** named class-id lists (e.g. train / val / test); always has at least one entry */
  readonly splits: Readonly<Record<string, readonly number[]>>;
  itemCount(cls: number): number;
  classInfo(cls: number): ClassInfo;
  /** copy item `item` of class `cls` into `out` at `offset` (featureSize floats) */
  readItem(cls: number, item: number, out: Float32Array, offset?: number): void;
  /** identifies the dataset's content layout (class names + item counts); stored in episode-set files */
  readonly fingerprint: string;
}

/** Compute the fingerprint of a dataset from its class names and item counts. */
export function computeFingerprint(name: string, classes: { name: string; count: number }[], featureShape: readonly number[]): string {
  const h = createHash('sha256');
  h.update(`${name}|${featureShape.join('x')}|${classes.length}\n`);
  for (const c of classes) h.update(`${c.name}\t${c.count}\n`);
  return h.digest('hex').slice(0, 16);
}

export function checkClass(ds: ClassDataset, cls: number): void {
  if (!Number.isInteger(cls) || cls < 0 || cls >= ds.numClasses) {
    throw new DataError(`${ds.name}: class id ${cls} out of range (expected an integer in 0..${ds.numClasses - 1})`);
  }
}

export interface PackedInit {
  name: string;
  featureShape: number[];
  /** all items, class after class; uint8 data is scaled by `scale` when read */
  data: Uint8Array | Float32Array;
  scale?: number;
  /** classStart[c] = index of the first item of class c; length numClasses + 1 */
  classStart: Int32Array;
  classes: ClassInfo[];
  splits?: Record<string, number[]>;
}

/** A dataset whose items live in one packed typed array (float32 or uint8). */
export class PackedDataset implements ClassDataset {
  readonly kind = 'classification' as const;
  readonly name: string;
  readonly featureShape: readonly number[];
  readonly featureSize: number;
  readonly numClasses: number;
  readonly data: Uint8Array | Float32Array;
  readonly scale: number;
  readonly classStart: Int32Array;
  protected readonly classes: ClassInfo[];
  splits: Readonly<Record<string, readonly number[]>>;
  private fp: string | null = null;
  private lut: Float32Array | null = null;

  constructor(init: PackedInit) {
    this.name = init.name;
    this.featureShape = Object.freeze([...init.featureShape]);
    this.featureSize = init.featureShape.reduce((a, b) => a * b, 1);
    this.data = init.data;
    this.scale = init.scale ?? 1;
    this.classStart = init.classStart;
    this.classes = init.classes;
    this.numClasses = init.classes.length;
    if (init.classStart.length !== this.numClasses + 1) {
      throw new Error(`PackedDataset ${init.name}: classStart has ${init.classStart.length} entries, expected ${this.numClasses + 1}`);
    }
    const total = init.classStart[this.numClasses]!;
    if (total * this.featureSize !== init.data.length) {
      throw new Error(`PackedDataset ${init.name}: data has ${init.data.length} values, expected ${total} items x ${this.featureSize}`);
    }
    this.splits = init.splits ?? { all: Array.from({ length: this.numClasses }, (_, i) => i) };
  }

  get fingerprint(): string {
    if (this.fp === null) {
      this.fp = computeFingerprint(
        this.name,
        this.classes.map((c, i) => ({ name: c.name, count: this.itemCount(i) })),
        this.featureShape,
      );
    }
    return this.fp;
  }

  /** Total number of items over all classes. */
  get totalItems(): number {
    return this.classStart[this.numClasses]!;
  }

  itemCount(cls: number): number {
    return this.classStart[cls + 1]! - this.classStart[cls]!;
  }

  classInfo(cls: number): ClassInfo {
    checkClass(this, cls);
    return this.classes[cls]!;
  }

  /** start offset (in values) of an item in `data` */
  protected itemOffset(cls: number, item: number): number {
    if (!(cls >= 0 && cls < this.numClasses)) checkClass(this, cls);
    const n = this.itemCount(cls);
    if (!Number.isInteger(item) || item < 0 || item >= n) {
      throw new DataError(`${this.name}: item ${item} out of range for class ${cls} ('${this.classes[cls]!.name}', ${n} items)`);
    }
    return (this.classStart[cls]! + item) * this.featureSize;
  }

  readItem(cls: number, item: number, out: Float32Array, offset = 0): void {
    const src = this.itemOffset(cls, item);
    const n = this.featureSize;
    const d = this.data;
    if (d instanceof Float32Array && this.scale === 1) {
      out.set(d.subarray(src, src + n), offset);
      return;
    }
    const s = this.scale;
    if (d instanceof Uint8Array) {
      if (!this.lut || this.lut[1] !== Math.fround(s)) this.lut = Float32Array.from({ length: 256 }, (_, v) => v * s);
      const lut = this.lut;
      for (let i = 0; i < n; i++) out[offset + i] = lut[d[src + i]!]!;
      return;
    }
    for (let i = 0; i < n; i++) out[offset + i] = d[src + i]! * s;
  }
}

/**
 * Split the classes of a dataset at random (seeded) into named parts by fraction, e.g.
 * {train: 0.6, val: 0.2, test: 0.2}. Every class lands in exactly one part; parts are sorted.
 */
export function splitClasses(
  classes: number | readonly number[],
  fractions: Record<string, number>,
  seed: number | string = 0,
): Record<string, number[]> {
  const ids = typeof classes === 'number' ? Array.from({ length: classes }, (_, i) => i) : [...classes];
  const names = Object.keys(fractions);
  const total = names.reduce((a, k) => a + fractions[k]!, 0);
  if (names.length === 0 || !(total > 0) || names.some((k) => !(fractions[k]! >= 0))) {
    throw new DataError(`splitClasses: fractions must be non-negative with a positive sum, got ${JSON.stringify(fractions)}`);
  }
  const order = new Rng(`split/${seed}`).shuffle(ids);
  const out: Record<string, number[]> = {};
  let start = 0;
  let acc = 0;
  names.forEach((k, i) => {
    acc += fractions[k]!;
    const end = i === names.length - 1 ? order.length : Math.round((acc / total) * order.length);
    out[k] = order.slice(start, end).sort((a, b) => a - b);
    start = end;
  });
  return out;
}

/** The same dataset with other named splits (everything else is delegated). */
export function withSplits<T extends ClassDataset>(ds: T, splits: Record<string, readonly number[]>): T {
  for (const [k, ids] of Object.entries(splits)) {
    for (const c of ids) {
      if (!Number.isInteger(c) || c < 0 || c >= ds.numClasses) {
        throw new DataError(`${ds.name}: split '${k}' has class id ${c} out of range (expected 0..${ds.numClasses - 1})`);
      }
    }
  }
  return new Proxy(ds, {
    get(target, prop, receiver) {
      if (prop === 'splits') return splits;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** Resolve a split name (or an explicit class list, or undefined = all classes) to class ids. */
export function resolveClasses(ds: ClassDataset, classes: string | readonly number[] | undefined): readonly number[] {
  if (classes === undefined) return Array.from({ length: ds.numClasses }, (_, i) => i);
  if (typeof classes === 'string') {
    const s = ds.splits[classes];
    if (!s) {
      throw new DataError(`${ds.name}: no split named '${classes}' (available: ${Object.keys(ds.splits).join(', ')})`);
    }
    return s;
  }
  for (const c of classes) checkClass(ds, c);
  return classes;
}
