import { inflateSync } from 'node:zlib';
import pngjs from 'pngjs';

/** Decoded 8-bit image in its native channel layout (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA). */
export interface DecodedImage {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

let crcTable: Uint32Array | null = null;
function crc32(buf: Uint8Array, start: number, end: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = crcTable[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function isPng(buf: Uint8Array): boolean {
  if (buf.length < 8) return false;
  for (let i = 0; i < 8; i++) if (buf[i] !== SIGNATURE[i]) return false;
  return true;
}

/**
 * Decode a PNG. Non-interlaced images with bit depth <= 8 (the common case, and all of Omniglot)
 * go through a direct decoder (chunk CRCs checked, node:zlib inflate, PNG row filters) because
 * pngjs unpacks 1-bit images ~50x slower; interlaced or 16-bit images are handed to pngjs.
 * Throws plain Errors; callers wrap them into a DataError naming the file.
 */
export function decodePng(buf: Uint8Array): DecodedImage {
  if (!isPng(buf)) throw new Error('not a PNG file (bad signature)');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 8;
  let width = 0, height = 0, depth = 0, colorType = -1, interlace = 0;
  let palette: Uint8Array | null = null;
  let trns: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  let sawEnd = false;
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new Error(`truncated chunk header at byte ${off}`);
    const len = dv.getUint32(off);
    const type = String.fromCharCode(buf[off + 4]!, buf[off + 5]!, buf[off + 6]!, buf[off + 7]!);
    const dataStart = off + 8;
    const dataEnd = dataStart + len;
    if (dataEnd + 4 > buf.length) throw new Error(`truncated ${type} chunk (needs ${len} bytes at byte ${dataStart})`);
    const crc = dv.getUint32(dataEnd);
    if (crc32(buf, off + 4, dataEnd) !== crc) throw new Error(`CRC mismatch in ${type} chunk at byte ${off}`);
    const data = buf.subarray(dataStart, dataEnd);
    if (type === 'IHDR') {
      if (len !== 13) throw new Error('IHDR chunk has wrong length');
      width = dv.getUint32(dataStart);
      height = dv.getUint32(dataStart + 4);
      depth = data[8]!;
      colorType = data[9]!;
      interlace = data[12]!;
      if (data[10] !== 0 || data[11] !== 0) throw new Error('unsupported compression or filter method');
    } else if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') trns = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') {
      sawEnd = true;
      break;
    }
    off = dataEnd + 4;
  }
  if (colorType < 0) throw new Error('missing IHDR chunk');
  if (!sawEnd) throw new Error('missing IEND chunk (file truncated?)');
  if (idat.length === 0) throw new Error('no image data (IDAT) chunk');
  if (width === 0 || height === 0) throw new Error(`invalid size ${width}x${height}`);
  const valid: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  if (!valid[colorType]?.includes(depth)) throw new Error(`invalid colour type ${colorType} with bit depth ${depth}`);
  if (interlace !== 0 || depth === 16) return decodeWithPngjs(buf);

  const samples = colorType === 2 ? 3 : colorType === 4 ? 2 : colorType === 6 ? 4 : 1;
  const bitsPP = samples * depth;
  const bpp = Math.max(1, bitsPP >> 3);
  const stride = Math.ceil((width * bitsPP) / 8);
  const raw = inflateSync(idat.length === 1 ? idat[0]! : Buffer.concat(idat));
  if (raw.length < (stride + 1) * height) {
    throw new Error(`image data too short: ${raw.length} bytes for ${width}x${height} (needs ${(stride + 1) * height})`);
  }
  // unfilter in place into `rows`
  const rows = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const ft = raw[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const dst = y * stride;
    const prev = dst - stride;
    switch (ft) {
      case 0:
        for (let i = 0; i < stride; i++) rows[dst + i] = raw[src + i]!;
        break;
      case 1:
        for (let i = 0; i < stride; i++) rows[dst + i] = (raw[src + i]! + (i >= bpp ? rows[dst + i - bpp]! : 0)) & 255;
        break;
      case 2:
        for (let i = 0; i < stride; i++) rows[dst + i] = (raw[src + i]! + (y > 0 ? rows[prev + i]! : 0)) & 255;
        break;
      case 3:
        for (let i = 0; i < stride; i++) {
          const a = i >= bpp ? rows[dst + i - bpp]! : 0;
          const b = y > 0 ? rows[prev + i]! : 0;
          rows[dst + i] = (raw[src + i]! + ((a + b) >> 1)) & 255;
        }
        break;
      case 4:
        for (let i = 0; i < stride; i++) {
          const a = i >= bpp ? rows[dst + i - bpp]! : 0;
          const b = y > 0 ? rows[prev + i]! : 0;
          const c = i >= bpp && y > 0 ? rows[prev + i - bpp]! : 0;
          const p = a + b - c;
          const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          const pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          rows[dst + i] = (raw[src + i]! + pred) & 255;
        }
        break;
      default:
        throw new Error(`invalid row filter type ${ft} in row ${y}`);
    }
  }
  const n = width * height;
  if (depth === 8 && colorType !== 3) {
    if (colorType === 0 && trns) {
      const out = new Uint8Array(n * 2);
      const t = trns.length >= 2 ? ((trns[0]! << 8) | trns[1]!) & 255 : -1;
      for (let i = 0; i < n; i++) {
        out[2 * i] = rows[i]!;
        out[2 * i + 1] = rows[i] === t ? 0 : 255;
      }
      return { width, height, channels: 2, data: out };
    }
    if (colorType === 2 && trns && trns.length >= 6) {
      const tr = trns[1]!, tg = trns[3]!, tb = trns[5]!;
      const out = new Uint8Array(n * 4);
      for (let i = 0; i < n; i++) {
        const r = rows[3 * i]!, g = rows[3 * i + 1]!, b = rows[3 * i + 2]!;
        out[4 * i] = r;
        out[4 * i + 1] = g;
        out[4 * i + 2] = b;
        out[4 * i + 3] = r === tr && g === tg && b === tb ? 0 : 255;
      }
      return { width, height, channels: 4, data: out };
    }
    return { width, height, channels: samples as 1 | 2 | 3 | 4, data: rows };
  }
  // sub-byte grey or palette: unpack samples (MSB first)
  const idx = new Uint8Array(n);
  const mask = (1 << depth) - 1;
  const perByte = 8 / depth;
  for (let y = 0; y < height; y++) {
    const r = y * stride;
    const o = y * width;
    let x = 0;
    for (let b = 0; b < stride && x < width; b++) {
      const byte = rows[r + b]!;
      for (let k = 0; k < perByte && x < width; k++, x++) idx[o + x] = (byte >> (8 - depth * (k + 1))) & mask;
    }
  }
  if (colorType === 0) {
    const scale = 255 / mask;
    const t = trns && trns.length >= 2 ? ((trns[0]! << 8) | trns[1]!) & mask : -1;
    if (t >= 0) {
      const out = new Uint8Array(n * 2);
      for (let i = 0; i < n; i++) {
        out[2 * i] = Math.round(idx[i]! * scale);
        out[2 * i + 1] = idx[i] === t ? 0 : 255;
      }
      return { width, height, channels: 2, data: out };
    }
    if (depth === 8) return { width, height, channels: 1, data: idx };
    for (let i = 0; i < n; i++) idx[i] = Math.round(idx[i]! * scale);
    return { width, height, channels: 1, data: idx };
  }
  // palette
  if (!palette || palette.length % 3 !== 0) throw new Error('palette image without a valid PLTE chunk');
  const entries = palette.length / 3;
  const ch = trns ? 4 : 3;
  const out = new Uint8Array(n * ch);
  for (let i = 0; i < n; i++) {
    const p = idx[i]!;
    if (p >= entries) throw new Error(`palette index ${p} out of range (${entries} entries)`);
    out[ch * i] = palette[3 * p]!;
    out[ch * i + 1] = palette[3 * p + 1]!;
    out[ch * i + 2] = palette[3 * p + 2]!;
    if (ch === 4) out[ch * i + 3] = p < trns!.length ? trns![p]! : 255;
  }
  return { width, height, channels: ch as 3 | 4, data: out };
}

function decodeWithPngjs(buf: Uint8Array): DecodedImage {
  const png = pngjs.PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  return { width: png.width, height: png.height, channels: 4, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length) };
}
