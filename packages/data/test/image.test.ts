import { describe, expect, it } from 'vitest';
import pngjs from 'pngjs';
import jpeg from 'jpeg-js';
import { Rng } from '@metalearn/core';
import { decodeImage, decodePng, resizeImage, toFloat, DataError } from '../src/index.js';
import { writePngRaw } from './helpers.js';

function randomRgba(w: number, h: number, rng: Rng): Buffer {
  const b = Buffer.alloc(w * h * 4);
  for (let i = 0; i < b.length; i++) b[i] = rng.int(256);
  return b;
}

describe('PNG decoding', () => {
  it('matches pngjs for every colour type it writes (8 and 16 bit, with filters)', () => {
    const rng = new Rng(1);
    for (const colorType of [0, 2, 4, 6] as const) {
      for (const bitDepth of [8, 16] as const) {
        const png = new pngjs.PNG({ width: 13, height: 7, colorType, inputColorType: 6, bitDepth, inputHasAlpha: true });
        // smooth-ish content so that PNG row filters get used
        const d = randomRgba(13, 7, rng);
        for (let i = 4; i < d.length; i++) d[i] = (d[i - 4]! + (d[i]! % 9)) & 255;
        png.data = d;
        const buf = pngjs.PNG.sync.write(png, { colorType, bitDepth, inputColorType: 6, inputHasAlpha: true });
        const ref = pngjs.PNG.sync.read(buf);
        const mine = decodePng(buf);
        expect([mine.width, mine.height]).toEqual([13, 7]);
        const a = toFloat(mine, 3);
        const b = toFloat({ width: 13, height: 7, channels: 4, data: new Uint8Array(ref.data) }, 3);
        for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-6);
      }
    }
  });

  it('decodes 1/2/4-bit grey and palette images', () => {
    // 1-bit 10x2: row 0 = 1010101010, row 1 = 0000011111
    const one = writePngRaw({ width: 10, height: 2, depth: 1, colorType: 0, rows: [Uint8Array.of(0b10101010, 0b10000000), Uint8Array.of(0b00000111, 0b11000000)] });
    const d1 = decodePng(one);
    expect(Array.from(d1.data)).toEqual([255, 0, 255, 0, 255, 0, 255, 0, 255, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255]);
    const two = writePngRaw({ width: 4, height: 1, depth: 2, colorType: 0, rows: [Uint8Array.of(0b00011011)] });
    expect(Array.from(decodePng(two).data)).toEqual([0, 85, 170, 255]);
    const four = writePngRaw({ width: 3, height: 1, depth: 4, colorType: 0, rows: [Uint8Array.of(0x0f, 0x50)] });
    expect(Array.from(decodePng(four).data)).toEqual([0, 255, 85]);
    const pal = writePngRaw({ width: 3, height: 1, depth: 2, colorType: 3, rows: [Uint8Array.of(0b00011000)], palette: Uint8Array.of(255, 0, 0, 0, 255, 0, 0, 0, 255), trns: Uint8Array.of(255, 128) });
    const dp = decodePng(pal);
    expect(dp.channels).toBe(4);
    expect(Array.from(dp.data)).toEqual([255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 255]);
  });

  it('decodes JPEG through jpeg-js', () => {
    const w = 16, h = 8;
    const data = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) data.set([200, 40, 40, 255], i * 4);
    const buf = jpeg.encode({ width: w, height: h, data }, 95).data;
    const img = decodeImage(buf, 'x.jpg');
    expect(img.channels).toBe(3);
    const f = toFloat(img, 3);
    expect(f[0]).toBeCloseTo(200 / 255, 1);
    expect(f[1]).toBeCloseTo(40 / 255, 1);
  });

  it('gives a DataError naming the file for corrupt or unknown data', () => {
    const png = new pngjs.PNG({ width: 4, height: 4 });
    png.data.fill(7);
    const good = pngjs.PNG.sync.write(png);
    const cases: [Uint8Array, RegExp][] = [
      [good.subarray(0, 40), /corrupt PNG \/d\/bad\.png: .*(truncated|missing)/],
      [Buffer.concat([good.subarray(0, 20), Buffer.from([1, 2, 3, 4]), good.subarray(24)]), /corrupt PNG \/d\/bad\.png: CRC mismatch in IHDR/],
      [Buffer.from('hello world'), /cannot decode image \/d\/bad\.png: unknown file signature \(expected a PNG or JPEG image\)/],
      [Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2, 3]), /corrupt JPEG \/d\/bad\.png/],
    ];
    for (const [buf, re] of cases) {
      let err: unknown;
      try {
        decodeImage(buf, '/d/bad.png');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DataError);
      expect((err as Error).message).toMatch(re);
    }
  });
});

describe('resize', () => {
  it('area: integer factor = block means; mean is preserved for any factor', () => {
    const rng = new Rng(2);
    const src = rng.uniformArray(8 * 6);
    const out = resizeImage(src, 6, 8, 1, 3, 4, 'area');
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 4; x++) {
        const m = (src[2 * y * 8 + 2 * x]! + src[2 * y * 8 + 2 * x + 1]! + src[(2 * y + 1) * 8 + 2 * x]! + src[(2 * y + 1) * 8 + 2 * x + 1]!) / 4;
        expect(out[y * 4 + x]).toBeCloseTo(m, 5);
      }
    }
    const big = rng.uniformArray(105 * 105 * 3);
    const small = resizeImage(big, 105, 105, 3, 28, 28, 'area');
    for (let c = 0; c < 3; c++) {
      let a = 0, b = 0;
      for (let i = c; i < big.length; i += 3) a += big[i]!;
      for (let i = c; i < small.length; i += 3) b += small[i]!;
      expect(b / (28 * 28)).toBeCloseTo(a / (105 * 105), 4);
    }
  });

  it('bilinear upscaling interpolates between pixel centres and keeps constants', () => {
    const out = resizeImage(Float32Array.of(0, 1), 1, 2, 1, 1, 4, 'bilinear');
    expect(Array.from(out)).toEqual([0, 0.25, 0.75, 1]);
    const c = resizeImage(new Float32Array(9).fill(0.3), 3, 3, 1, 7, 5, 'auto');
    for (const v of c) expect(v).toBeCloseTo(0.3, 6);
  });
});
