/** Self-contained HTML report (no scripts, no external resources) with inline SVG learning curves. */

export interface Series {
  label: string;
  color: string;
  points: [number, number][];
  /** optional symmetric error bars (same length as points) */
  err?: number[];
}

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1000 || a < 0.01 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

/** An SVG line chart of one or more series against the iteration. */
export function lineChart(title: string, series: Series[], opts: { yLabel?: string; yMin?: number; yMax?: number; width?: number; height?: number } = {}): string {
  const W = opts.width ?? 560;
  const H = opts.height ?? 260;
  const m = { l: 56, r: 16, t: 28, b: 40 };
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="60" role="img"><text x="8" y="30" font-size="13">${esc(title)}: no data</text></svg>`;
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  if (x1 === x0) x1 = x0 + 1;
  const ys = series.flatMap((s) => s.points.map((p, i) => [p[1] - (s.err?.[i] ?? 0), p[1] + (s.err?.[i] ?? 0)]).flat()).filter(Number.isFinite);
  let y0 = opts.yMin ?? Math.min(...ys);
  let y1 = opts.yMax ?? Math.max(...ys);
  if (!(y1 > y0)) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  x0 = Math.min(x0, x1);
  const sx = (x: number): number => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number): number => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${m.l}" y="18" font-size="13" font-weight="bold">${esc(title)}</text>`);
  for (const t of niceTicks(y0, y1)) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${m.l - 6}" y="${y}" font-size="10" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1, 6)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${H - m.b}" y2="${H - m.b + 4}" stroke="#555"/>`);
    parts.push(`<text x="${x}" y="${H - m.b + 15}" font-size="10" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#555"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#555"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 6}" font-size="11" text-anchor="middle">iteration</text>`);
  if (opts.yLabel) parts.push(`<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(opts.yLabel)}</text>`);
  series.forEach((s, si) => {
    const ok = s.points.filter((p) => Number.isFinite(p[1]));
    if (s.err) {
      s.points.forEach((p, i) => {
        const e = s.err![i] ?? 0;
        if (!Number.isFinite(e) || e === 0) return;
        parts.push(`<line x1="${sx(p[0]).toFixed(1)}" x2="${sx(p[0]).toFixed(1)}" y1="${sy(p[1] - e).toFixed(1)}" y2="${sy(p[1] + e).toFixed(1)}" stroke="${s.color}" stroke-opacity="0.6"/>`);
      });
    }
    if (ok.length > 1) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.6" points="${ok.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ')}"/>`);
    if (ok.length <= 40) for (const p of ok) parts.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.2" fill="${s.color}"/>`);
    const lx = W - m.r - 150;
    const ly = m.t + 4 + si * 15;
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"/><text x="${lx + 24}" y="${ly}" font-size="11" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

export interface ReportInput {
  title: string;
  summary: Record<string, unknown>;
  train: { iteration: number; loss: number; accuracy: number }[];
  val: { iteration: number; accuracy: number; ci95: number }[];
  config: unknown;
}

function summaryRows(obj: Record<string, unknown>, prefix = ''): string[] {
  const rows: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) rows.push(...summaryRows(v as Record<string, unknown>, `${prefix}${k}.`));
    else rows.push(`<tr><th>${esc(prefix + k)}</th><td>${esc(typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : Array.isArray(v) ? v.join(', ') : v)}</td></tr>`);
  }
  return rows;
}

/** The whole report as one HTML string. */
export function renderReport(r: ReportInput): string {
  const loss = lineChart('Meta-training loss', [{ label: 'train loss', color: '#c0392b', points: r.train.map((t) => [t.iteration, t.loss]) }], { yLabel: 'loss' });
  const acc = lineChart(
    'Accuracy',
    [
      { label: 'train (query)', color: '#2471a3', points: r.train.map((t) => [t.iteration, t.accuracy]) },
      { label: 'validation ± 95% CI', color: '#1e8449', points: r.val.map((v) => [v.iteration, v.accuracy]), err: r.val.map((v) => v.ci95) },
    ],
    { yLabel: 'accuracy', yMin: 0, yMax: 1 },
  );
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(r.title)}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.charts svg { border: 1px solid #ddd; max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f6f6f6; font-weight: 600; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }
.headline { font-size: 18px; margin: 8px 0 16px; }
</style>
</head>
<body>
<h1>${esc(r.title)}</h1>
<p class="headline">${esc(String(r.summary['headline'] ?? ''))}</p>
<h2>Learning curves</h2>
<div class="charts">${loss}${acc}</div>
<h2>Summary</h2>
<table>${summaryRows(Object.fromEntries(Object.entries(r.summary).filter(([k]) => k !== 'headline'))).join('\n')}</table>
<h2>Pipeline (with defaults)</h2>
<pre>${esc(JSON.stringify(r.config, null, 2))}</pre>
</body>
</html>
`;
}
