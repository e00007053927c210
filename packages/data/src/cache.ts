import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Binary dataset cache. One file per (source, options) key:
 *   bytes 0..7   "MLCACHE1"
 *   bytes 8..11  uint32 LE length L of the header JSON
 *   bytes 12..   header JSON (utf8) { key, meta, sections: [{name, dtype, offset, length}] }
 *   then each section's raw little-endian data at its 8-byte aligned absolute offset.
 * Written atomically: temp file in the same folder, fsync, rename.
 */
export type CacheArray = Uint8Array | Float32Array | Int32Array;
type Dtype = 'uint8' | 'float32' | 'int32';

const MAGIC = 'MLCACHE1';

/** `cache` option of every loader: true/undefined = default folder, a string = that folder, false = off. */
export type CacheOption = boolean | string | undefined;

/** Default cache folder: $METALEARN_CACHE, else ~/.cache/metalearn. */
export function defaultCacheDir(): string {
  return process.env['METALEARN_CACHE'] || join(homedir(), '.cache', 'metalearn');
}

export function resolveCacheDir(opt: CacheOption): string | null {
  if (opt === false) return null;
  if (typeof opt === 'string') return opt;
  return defaultCacheDir();
}

/** Stable JSON (sorted keys) so the same options always give the same key. */
export function stableStringify(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
    .join(',')}}`;
}

export function hashKey(parts: unknown): string {
  return createHash('sha256').update(stableStringify(parts)).digest('hex');
}

function dtypeOf(a: CacheArray): Dtype {
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Float32Array) return 'float32';
  return 'int32';
}

export function cacheFile(dir: string, prefix: string, key: string): string {
  return join(dir, `${prefix}-${key.slice(0, 32)}.mlc`);
}

export function writeCache(file: string, key: string, meta: unknown, arrays: Record<string, CacheArray>): void {
  const names = Object.keys(arrays);
  // header size depends on offsets; iterate until stable (offsets are only a few digits)
  let headerBytes = Buffer.alloc(0);
  let sections: { name: string; dtype: Dtype; offset: number; length: number }[] = [];
  for (let pass = 0; pass < 4; pass++) {
    let pos = align8(12 + headerBytes.length);
    sections = names.map((name) => {
      const a = arrays[name]!;
      const s = { name, dtype: dtypeOf(a), offset: pos, length: a.length };
      pos = align8(pos + a.byteLength);
      return s;
    });
    const next = Buffer.from(JSON.stringify({ key, meta, sections }), 'utf8');
    if (next.length === headerBytes.length) {
      headerBytes = next;
      break;
    }
    headerBytes = next;
  }
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${process.hrtime.bigint()}`;
  const fd = openSync(tmp, 'w');
  try {
    const head = Buffer.alloc(12);
    head.write(MAGIC, 0, 'latin1');
    head.writeUInt32LE(headerBytes.length, 8);
    let pos = 0;
    const put = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
      pos += b.length;
    };
    put(head);
    put(headerBytes);
    for (const s of sections) {
      if (pos < s.offset) put(new Uint8Array(s.offset - pos));
      const a = arrays[s.name]!;
      put(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* ignore */
    }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

export interface CacheEntry {
  meta: unknown;
  arrays: Record<string, CacheArray>;
}

/** Read a cache file; null when absent, for another key, or damaged (it is then rebuilt). */
export function readCache(file: string, key: string): CacheEntry | null {
  if (!existsSync(file)) return null;
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    return null;
  }
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) return null;
  const hl = buf.readUInt32LE(8);
  if (12 + hl > buf.length) return null;
  let header: { key: string; meta: unknown; sections: { name: string; dtype: Dtype; offset: number; length: number }[] };
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + hl));
  } catch {
    return null;
  }
  if (header.key !== key || !Array.isArray(header.sections)) return null;
  const arrays: Record<string, CacheArray> = {};
  for (const s of header.sections) {
    const size = s.dtype === 'uint8' ? 1 : 4;
    if (s.offset + s.length * size > buf.length) return null;
    const abs = buf.byteOffset + s.offset;
    const ctor = s.dtype === 'uint8' ? Uint8Array : s.dtype === 'float32' ? Float32Array : Int32Array;
    const ab = buf.buffer as ArrayBuffer;
    if (abs % size === 0) arrays[s.name] = new ctor(ab, abs, s.length);
    else arrays[s.name] = new ctor(ab.slice(abs, abs + s.length * size));
  }
  return { meta: header.meta, arrays };
}
