import { describe, expect, it, afterAll } from 'vitest';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeCache, readCache, cacheFile, hashKey, resolveCacheDir, defaultCacheDir, loadIdx } from '../src/index.js';
import { tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('binary cache', () => {
  it('round-trips mixed arrays at aligned offsets; wrong key or damage reads as a miss', () => {
    const key = hashKey({ a: 1, b: [2, 3] });
    expect(hashKey({ b: [2, 3], a: 1 })).toBe(key); // key order does not matter
    const file = cacheFile(join(tmp.dir, 'c'), 'test', key);
    const u8 = Uint8Array.from([1, 2, 3, 4, 5]);
    const f32 = Float32Array.from([0.5, -1.25, 3e8]);
    const i32 = Int32Array.from([-7, 0, 2 ** 30]);
    writeCache(file, key, { hello: 'world' }, { u8, f32, i32 });
    expect(readdirSync(join(tmp.dir, 'c'))).toEqual([file.split('/').pop()]); // no temp file left
    const back = readCache(file, key)!;
    expect(back.meta).toEqual({ hello: 'world' });
    expect(Array.from(back.arrays['u8']!)).toEqual([1, 2, 3, 4, 5]);
    expect(Array.from(back.arrays['f32']!)).toEqual(Array.from(f32));
    expect(Array.from(back.arrays['i32']!)).toEqual([-7, 0, 2 ** 30]);
    expect(back.arrays['f32']).toBeInstanceOf(Float32Array);
    expect(readCache(file, hashKey({ other: true }))).toBeNull();
    const buf = readFileSync(file);
    writeFileSync(file, buf.subarray(0, buf.length - 6));
    expect(readCache(file, key)).toBeNull();
    writeFileSync(file, 'garbage');
    expect(readCache(file, key)).toBeNull();
    expect(readCache(join(tmp.dir, 'absent.mlc'), key)).toBeNull();
  });

  it('cache folder: option, then $METALEARN_CACHE, then ~/.cache/metalearn; false = off', () => {
    const old = process.env['METALEARN_CACHE'];
    try {
      process.env['METALEARN_CACHE'] = '/some/where';
      expect(resolveCacheDir(undefined)).toBe('/some/where');
      expect(resolveCacheDir(true)).toBe('/some/where');
      expect(resolveCacheDir('/x')).toBe('/x');
      expect(resolveCacheDir(false)).toBeNull();
      delete process.env['METALEARN_CACHE'];
      expect(defaultCacheDir()).toMatch(/\.cache\/metalearn$/);
    } finally {
      if (old === undefined) delete process.env['METALEARN_CACHE'];
      else process.env['METALEARN_CACHE'] = old;
    }
  });

  it('a damaged cache file is rebuilt transparently by the loader', async () => {
    const d = join(tmp.dir, 'idx');
    mkdirSync(d, { recursive: true });
    const head = (dims: number[]) => {
      const b = Buffer.alloc(4 + 4 * dims.length);
      b[2] = 0x08;
      b[3] = dims.length;
      dims.forEach((x, i) => b.writeUInt32BE(x, 4 + 4 * i));
      return b;
    };
    writeFileSync(join(d, 'img'), Buffer.concat([head([4, 2, 2]), Buffer.from(Array.from({ length: 16 }, (_, i) => i * 10))]));
    writeFileSync(join(d, 'lab'), Buffer.concat([head([4]), Buffer.from([1, 0, 1, 0])]));
    const cache = join(tmp.dir, 'c2');
    const a = await loadIdx({ images: join(d, 'img'), labels: join(d, 'lab'), cache });
    const [f] = readdirSync(cache);
    writeFileSync(join(cache, f!), readFileSync(join(cache, f!)).subarray(0, 40));
    const b = await loadIdx({ images: join(d, 'img'), labels: join(d, 'lab'), cache });
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    expect(readFileSync(join(cache, f!)).length).toBeGreaterThan(40); // rewritten
  });
});
