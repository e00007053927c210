/// <reference lib="dom" />
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runPipeline } from '../src/index.js';

/** Debian's chromium (CI installs it with `apt-get install -y chromium`). */
const CHROMIUM = process.env['METALEARN_CHROMIUM'] ?? '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);
if (!hasChromium) console.warn(`report-browser.test: skipped, no chromium at ${CHROMIUM} (apt-get install -y chromium, or set METALEARN_CHROMIUM)`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metalearn-report-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('report.html in headless Chromium', () => {
  it.skipIf(!hasChromium)('renders both charts (polylines with points, non-empty boxes), the test accuracy, and loads nothing external', async () => {
    const f = path.join(tmp, 'tiny.yaml');
    fs.writeFileSync(
      f,
      [
        'name: browser check',
        'data:\n  dataset: synthetic-glyphs\n  options: { numClasses: 40, itemsPerClass: 6, size: 16 }',
        'episodes: { ways: 5, shots: 1, queries: 2 }',
        'learner:\n  id: protonet\n  backbone: { type: conv4, filters: 8, blocks: 3 }',
        'train: { iterations: 6, metaBatch: 1, seed: 1, checkpointEvery: 3, valEvery: 2, valEpisodes: 3, logEvery: 1 }',
        'evaluate: { episodes: 5, ways: 5, shots: 1, queries: 2, engine: tfjs }',
        'export: { onnx: false }',
        '',
      ].join('\n'),
    );
    const s = await runPipeline(f, { out: path.join(tmp, 'out'), progressStream: null, log: () => {} });
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      const errors: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      const url = pathToFileURL(s.report).href;
      await page.goto(url, { waitUntil: 'load' });
      const charts = await page.evaluate(() =>
        Array.from(document.querySelectorAll('svg')).map((svg) => {
          const r = svg.getBoundingClientRect();
          return {
            label: svg.getAttribute('aria-label') ?? '',
            width: r.width,
            height: r.height,
            lines: Array.from(svg.querySelectorAll('polyline, path')).map((p) => {
              const b = (p as SVGGraphicsElement).getBBox();
              const pts = (p.getAttribute('points') ?? p.getAttribute('d') ?? '').trim().split(/\s+/).filter(Boolean);
              return { n: pts.length, bw: b.width, bh: b.height, finite: pts.every((q) => /^-?[\d.]+,-?[\d.]+$/.test(q) || /^[MLC]/.test(q)) };
            }),
            circles: svg.querySelectorAll('circle').length,
          };
        }),
      );
      expect(charts.length).toBeGreaterThanOrEqual(2);
      for (const c of charts.slice(0, 2)) {
        expect(c.width, c.label).toBeGreaterThan(100);
        expect(c.height, c.label).toBeGreaterThan(100);
        expect(c.lines.length, c.label).toBeGreaterThanOrEqual(1);
        for (const l of c.lines) {
          expect(l.n, c.label).toBeGreaterThanOrEqual(2);
          expect(l.finite, c.label).toBe(true);
          expect(l.bw, c.label).toBeGreaterThan(10);
        }
        expect(c.circles, c.label).toBeGreaterThanOrEqual(2);
      }
      // the training curve has one point per logged iteration
      const maxPoints = Math.max(...charts.flatMap((c) => c.lines.map((l) => l.n)));
      expect(maxPoints).toBe(6);
      const text = await page.evaluate(() => document.body.innerText);
      const pct = (s.accuracy * 100).toFixed(1);
      expect(text).toContain(`accuracy ${pct}`);
      expect(text).toMatch(/over 5 test episodes/);
      expect(errors).toEqual([]);
      expect(requests.filter((u) => u !== url && !u.startsWith('data:'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
