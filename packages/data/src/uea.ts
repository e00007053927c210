import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cacheFile, hashKey, readCache, resolveCacheDir, writeCache, type CacheOption } from './cache.js';
import { PackedDataset } from './dataset.js';
import { DataError, briefCause } from './errors.js';

/** One case of a .ts file: per-dimension values (NaN = missing) and its class label. */
export interface TsCase {
  dims: Float32Array[];
  label: string;
  /** 1-based line in the file */
  line: number;
}

export interface TsFile {
  problemName: string;
  dimensions: number;
  equalLength: boolean;
  seriesLength: number | null;
  classLabels: string[];
  missing: boolean;
  cases: TsCase[];
}

/**
 * Parse a UEA/UCR sktime `.ts` file: `@` header lines, `#` comments, then one case per line with
 * dimensions separated by ':' and the class label last. '?' (or NaN) is a missing value.
 * Errors name the file, the line and what was expected.
 */
export function parseTs(text: string, file: string): TsFile {
  const lines = text.split(/\r?\n/);
  const h: Partial<TsFile> & { classLabel?: boolean; timeStamps?: boolean } = {};
  let i = 0;
  let sawData = false;
  const err = (line: number, msg: string, expected?: string) =>
    new DataError(`${file} line ${line}: ${msg}`, expected === undefined ? { file, line } : { file, line, expected });
  const bool = (v: string | undefined, line: number, tag: string) => {
    if (v === 'true') return true;
    if (v === 'false') return false;
    throw err(line, `@${tag} must be true or false, got '${v ?? ''}'`);
  };
  for (; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line || line.startsWith('#')) continue;
    if (!line.startsWith('@')) throw err(i + 1, `data before @data (expected a header line '@...')`);
    const [tagRaw, ...rest] = line.split(/\s+/);
    const tag = tagRaw!.slice(1).toLowerCase();
    const n = i + 1;
    if (tag === 'data') {
      sawData = true;
      i++;
      break;
    } else if (tag === 'problemname') h.problemName = rest.join(' ');
    else if (tag === 'timestamps') h.timeStamps = bool(rest[0], n, 'timeStamps');
    else if (tag === 'missing') h.missing = bool(rest[0], n, 'missing');
    else if (tag === 'univariate') {
      if (bool(rest[0], n, 'univariate') && h.dimensions === undefined) h.dimensions = 1;
    } else if (tag === 'dimensions') {
      const d = Number(rest[0]);
      if (!Number.isInteger(d) || d < 1) throw err(n, `@dimensions must be a positive integer, got '${rest[0] ?? ''}'`);
      h.dimensions = d;
    } else if (tag === 'equallength') h.equalLength = bool(rest[0], n, 'equalLength');
    else if (tag === 'serieslength') {
      const d = Number(rest[0]);
      if (!Number.isInteger(d) || d < 1) throw err(n, `@seriesLength must be a positive integer, got '${rest[0] ?? ''}'`);
      h.seriesLength = d;
    } else if (tag === 'classlabel') {
      h.classLabel = bool(rest[0], n, 'classLabel');
      h.classLabels = rest.slice(1);
      if (h.classLabel && h.classLabels.length === 0) throw err(n, '@classLabel true must list the class labels');
    } else if (tag === 'targetlabel') {
      throw err(n, '@targetLabel (regression) files are not supported (expected @classLabel true ...)');
    }
    // other tags are ignored
  }
  if (!sawData) {
    throw new DataError(`${file}: no @data line (expected a sktime .ts header ending with @data)`, { file });
  }
  if (h.timeStamps) throw new DataError(`${file}: @timeStamps true is not supported (expected plain comma-separated values)`, { file });
  if (!h.classLabel) throw new DataError(`${file}: no '@classLabel true <labels>' header (expected a classification file)`, { file });
  const labels = new Set(h.classLabels!);
  const dimensions = h.dimensions;
  const equalLength = h.equalLength ?? true;
  const cases: TsCase[] = [];
  for (; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (!raw || raw.startsWith('#')) continue;
    const n = i + 1;
    const parts = raw.split(':');
    const label = parts.pop()!.trim();
    if (!labels.has(label)) {
      throw err(n, `class label '${label}' is not one of @classLabel ${[...labels].join(' ')}`, `a label from @classLabel`);
    }
    const nd = dimensions ?? parts.length;
    if (parts.length !== nd) {
      throw err(n, `case has ${parts.length} dimension(s), expected ${nd}${dimensions ? ` (@dimensions ${dimensions})` : ''}`, `${nd} dimensions`);
    }
    const dims = parts.map((p, d) => {
      const vals = p.split(',');
      const out = new Float32Array(vals.length);
      for (let k = 0; k < vals.length; k++) {
        const s = vals[k]!.trim();
        if (s === '?' || s === 'NaN' || s === 'nan') {
          out[k] = NaN;
          continue;
        }
        const v = Number(s);
        if (s === '' || !Number.isFinite(v)) {
          throw err(n, `dimension ${d + 1}, value ${k + 1}: '${s}' is not a number (expected a number or '?')`, 'a number or ?');
        }
        out[k] = v;
      }
      return out;
    });
    if (equalLength) {
      const want = h.seriesLength ?? cases[0]?.dims[0]?.length ?? dims[0]!.length;
      dims.forEach((dv, d) => {
        if (dv.length !== want) {
          throw err(n, `dimension ${d + 1} has ${dv.length} values, expected ${want} (@equalLength true${h.seriesLength ? `, @seriesLength ${h.seriesLength}` : ''})`, `${want} values`);
        }
      });
    }
    cases.push({ dims, label, line: n });
  }
  if (cases.length === 0) throw new DataError(`${file}: no cases after @data`, { file });
  return {
    problemName: h.problemName ?? '',
    dimensions: dimensions ?? cases[0]!.dims.length,
    equalLength,
    seriesLength: h.seriesLength ?? null,
    classLabels: h.classLabels!,
    missing: h.missing ?? false,
    cases,
  };
}

export interface UeaOptions {
  /** folder of the archive (holding <name>/<name>_TRAIN.ts); with `name` */
  root?: string;
  name?: string;
  /** explicit .ts files instead of root + name */
  files?: string[];
  /** which files of root/name to use (default both) */
  parts?: ('train' | 'test')[];
  /** 'instance' (default): z-normalise each series per dimension; 'dataset': per dimension over all; 'none' */
  normalize?: 'instance' | 'dataset' | 'none';
  /** missing values: linear interpolation (default) or 0 (= the mean after normalisation) */
  missing?: 'interpolate' | 'zero';
  /** fixed output length (default: the longest series); shorter series are zero-padded at the end */
  length?: number;
  /** resample every series linearly to `length` instead of padding / truncating */
  resample?: boolean;
  cache?: CacheOption;
}

function fillMissing(v: Float32Array, mode: 'interpolate' | 'zero'): void {
  if (mode === 'zero') {
    for (let i = 0; i < v.length; i++) if (Number.isNaN(v[i]!)) v[i] = 0;
    return;
  }
  let prev = -1;
  for (let i = 0; i <= v.length; i++) {
    if (i < v.length && Number.isNaN(v[i]!)) continue;
    // gap (prev, i)
    if (i - prev > 1) {
      const a = prev >= 0 ? v[prev]! : i < v.length ? v[i]! : 0;
      const b = i < v.length ? v[i]! : a;
      for (let k = prev + 1; k < i; k++) v[k] = prev < 0 ? b : i >= v.length ? a : a + ((b - a) * (k - prev)) / (i - prev);
    }
    prev = i;
  }
}

function resampleLinear(v: Float32Array, len: number): Float32Array {
  const out = new Float32Array(len);
  if (v.length === 1) return out.fill(v[0]!);
  for (let i = 0; i < len; i++) {
    const x = len === 1 ? 0 : (i * (v.length - 1)) / (len - 1);
    const i0 = Math.floor(x);
    const i1 = Math.min(i0 + 1, v.length - 1);
    out[i] = v[i0]! + (v[i1]! - v[i0]!) * (x - i0);
  }
  return out;
}

/** Build a class dataset ([length, channels] per item) from parsed .ts files. */
export function ueaFromParsed(files: TsFile[], opts: Omit<UeaOptions, 'root' | 'files' | 'parts' | 'cache'> & { name?: string }): PackedDataset {
  const first = files[0]!;
  const D = first.dimensions;
  const labels = first.classLabels;
  for (const f of files.slice(1)) {
    if (f.dimensions !== D) throw new DataError(`UEA: files disagree on @dimensions (${D} vs ${f.dimensions})`);
    const extra = f.classLabels.filter((l) => !labels.includes(l));
    if (extra.length) throw new DataError(`UEA: class label(s) ${extra.join(', ')} of ${f.problemName || 'a later file'} are not in the first file's @classLabel list`);
  }
  const norm = opts.normalize ?? 'instance';
  const missing = opts.missing ?? 'interpolate';
  const cases = files.flatMap((f) => f.cases);
  // per-dimension statistics for 'dataset' normalisation (ignoring missing values)
  const mean = new Float64Array(D);
  const std = new Float64Array(D).fill(1);
  if (norm === 'dataset') {
    const cnt = new Float64Array(D);
    const sq = new Float64Array(D);
    for (const c of cases) c.dims.forEach((v, d) => v.forEach((x) => { if (!Number.isNaN(x)) { mean[d]! += x; sq[d]! += x * x; cnt[d]!++; } }));
    for (let d = 0; d < D; d++) {
      mean[d] = cnt[d]! ? mean[d]! / cnt[d]! : 0;
      std[d] = Math.sqrt(Math.max(0, cnt[d]! ? sq[d]! / cnt[d]! - mean[d]! ** 2 : 0)) || 1;
    }
  }
  const processed = cases.map((c) =>
    c.dims.map((v) => {
      const x = Float32Array.from(v);
      return x;
    }),
  );
  processed.forEach((dims) =>
    dims.forEach((x, d) => {
      let m = mean[d]!, s = std[d]!;
      if (norm === 'instance') {
        let n = 0, a = 0, q = 0;
        for (const v of x) if (!Number.isNaN(v)) { a += v; q += v * v; n++; }
        m = n ? a / n : 0;
        s = n ? Math.sqrt(Math.max(0, q / n - m * m)) : 1;
        if (!(s > 1e-8)) s = 1;
      }
      if (norm !== 'none') for (let k = 0; k < x.length; k++) x[k] = (x[k]! - m) / s;
      fillMissing(x, missing);
    }),
  );
  const maxLen = Math.max(...processed.map((dims) => Math.max(...dims.map((x) => x.length))));
  const L = opts.length ?? maxLen;
  if (!Number.isInteger(L) || L < 1) throw new DataError(`UEA: length = ${opts.length}, expected a positive integer`);
  const li = new Map(labels.map((l, i) => [l, i]));
  const byClass: number[][] = labels.map(() => []);
  cases.forEach((c, i) => byClass[li.get(c.label)!]!.push(i));
  const classStart = new Int32Array(labels.length + 1);
  byClass.forEach((l, i) => (classStart[i + 1] = classStart[i]! + l.length));
  const fsz = L * D;
  const data = new Float32Array(classStart[labels.length]! * fsz);
  let k = 0;
  for (const list of byClass) {
    for (const ci of list) {
      const off = k * fsz;
      processed[ci]!.forEach((x, d) => {
        const v = opts.resample ? resampleLinear(x, L) : x;
        const n = Math.min(L, v.length);
        for (let t = 0; t < n; t++) data[off + t * D + d] = v[t]!;
      });
      k++;
    }
  }
  return new PackedDataset({
    name: opts.name ?? (first.problemName || 'uea'),
    featureShape: [L, D],
    data,
    classStart,
    classes: labels.map((l) => ({ name: l })),
  });
}

/** Load a UEA/UCR multivariate set from `.ts` files (z-normalised, padded to a common length). */
export async function loadUea(opts: UeaOptions): Promise<PackedDataset> {
  let files = opts.files;
  if (!files) {
    if (!opts.root || !opts.name) throw new DataError(`UEA: give either 'files' or both 'root' and 'name'`);
    const dir = join(opts.root, opts.name);
    if (!existsSync(dir)) throw new DataError(`UEA: missing folder ${dir} (expected ${dir}/${opts.name}_TRAIN.ts and _TEST.ts)`, { file: dir });
    files = (opts.parts ?? ['train', 'test']).map((p) => join(dir, `${opts.name}_${p.toUpperCase()}.ts`));
  }
  if (files.length === 0) throw new DataError(`UEA: no .ts files given`);
  for (const f of files) if (!existsSync(f)) throw new DataError(`UEA: file not found: ${f}`, { file: f });
  const build = { normalize: opts.normalize ?? 'instance', missing: opts.missing ?? 'interpolate', length: opts.length ?? null, resample: !!opts.resample };
  const cacheDir = resolveCacheDir(opts.cache);
  const key = hashKey({ v: 1, type: 'uea', files: files.map((f) => { const s = statSync(f); return [resolve(f), s.mtimeMs, s.size]; }), build, name: opts.name ?? null });
  const cfile = cacheDir ? cacheFile(cacheDir, 'uea', key) : '';
  const hit = cacheDir ? readCache(cfile, key) : null;
  if (hit) {
    const m = hit.meta as { name: string; featureShape: number[]; labels: string[] };
    return new PackedDataset({ name: m.name, featureShape: m.featureShape, data: hit.arrays['data'] as Float32Array, classStart: hit.arrays['classStart'] as Int32Array, classes: m.labels.map((l) => ({ name: l })) });
  }
  const parsed = files.map((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new DataError(`UEA: cannot read ${f}: ${briefCause(e)}`, { file: f, cause: e });
    }
    return parseTs(text, f);
  });
  const ds = ueaFromParsed(parsed, { ...opts, ...(opts.name ? { name: opts.name } : {}) });
  if (cacheDir) {
    try {
      writeCache(cfile, key, { name: ds.name, featureShape: ds.featureShape, labels: Array.from({ length: ds.numClasses }, (_, i) => ds.classInfo(i).name) }, { data: ds.data as Float32Array, classStart: ds.classStart });
    } catch (e) {
      process.emitWarning(`metalearn: could not write cache ${cfile}: ${briefCause(e)}`);
    }
  }
  return ds;
}
