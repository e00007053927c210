import * as fs from 'node:fs';
import * as path from 'node:path';

/** Parse `--key value` / `--flag` arguments; unknown keys are an error naming them. */
export function parseArgs(argv: string[], defaults: Record<string, string | number | boolean>): Record<string, string | number | boolean> {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}' (options: ${Object.keys(defaults).map((k) => `--${k}`).join(' ')})`);
    const key = a.slice(2);
    if (!(key in defaults)) throw new Error(`unknown option '--${key}' (options: ${Object.keys(defaults).map((k) => `--${k}`).join(' ')})`);
    const d = defaults[key];
    if (typeof d === 'boolean') out[key] = true;
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`option '--${key}' needs a value`);
      if (typeof d === 'number') {
        const n = Number(v);
        if (!Number.isFinite(n)) throw new Error(`option '--${key}' must be a number, got '${v}'`);
        out[key] = n;
      } else out[key] = v;
    }
  }
  return out;
}

export function writeOut(dir: string, name: string, data: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const f = path.join(dir, name);
  fs.writeFileSync(f, data);
  return f;
}

export interface Series {
  name: string;
  points: [number, number][];
}

/** A small self-contained SVG line chart. */
export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], opts: { logY?: boolean } = {}): string {
  const W = 640;
  const H = 400;
  const m = { l: 70, r: 170, t: 40, b: 50 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!opts.logY || y > 0));
  const tr = (y: number) => (opts.logY ? Math.log10(y) : y);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => tr(y));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!opts.logY) y0 = Math.min(0, y0);
  if (y1 === y0) y1 = y0 + 1;
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((tr(y) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2 - m.r / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`);
  parts.push(`<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`);
  for (let i = 0; i <= 5; i++) {
    const xv = x0 + ((x1 - x0) * i) / 5;
    const yv = y0 + ((y1 - y0) * i) / 5;
    const yl = opts.logY ? Math.pow(10, yv) : yv;
    parts.push(`<text x="${px(xv)}" y="${H - m.b + 16}" text-anchor="middle">${+xv.toPrecision(3)}</text>`);
    parts.push(`<text x="${m.l - 6}" y="${H - m.b - ((yv - y0) / (y1 - y0)) * (H - m.t - m.b) + 4}" text-anchor="end">${+yl.toPrecision(3)}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${xLabel}</text>`);
  parts.push(`<text x="16" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(m.t + H - m.b) / 2})">${yLabel}</text>`);
  series.forEach((s, i) => {
    const c = colors[i % colors.length]!;
    const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!opts.logY || y > 0));
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    if (pts.length <= 30) for (const [x, y] of pts) parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${c}"/>`);
    parts.push(`<rect x="${W - m.r + 10}" y="${m.t + i * 18}" width="12" height="3" fill="${c}"/><text x="${W - m.r + 28}" y="${m.t + i * 18 + 5}">${s.name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
