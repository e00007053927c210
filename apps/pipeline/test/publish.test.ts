/**
 * Publishing check: `npm pack` every package (core, data, metric, memory, optim, pipeline), install
 * all tarballs together into a fresh temporary project, and run a tiny default-like pipeline
 * through the library API (`import { runPipeline } from '@metalearn/pipeline'`) and the installed
 * `metalearn` binary under plain Node (no vitest, no path aliases).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_DIRS, ensureBuilt } from './helpers/build.js';

function sh(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
}

describe('npm pack + install of all @metalearn packages', () => {
  it('installs from the tarballs and runs a pipeline through @metalearn/pipeline under plain Node', () => {
    ensureBuilt();
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-publish-'));
    try {
      const tarballs: string[] = [];
      for (const dir of PACKAGE_DIRS) {
        const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', tmp], dir)) as { name: string; filename: string; files: { path: string }[] }[];
        const p = packed[0]!;
        const files = p.files.map((f) => f.path);
        expect(files, p.name).toContain('dist/index.js');
        expect(files, p.name).toContain('dist/index.d.ts');
        expect(files, p.name).toContain('package.json');
        expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.test.js')), p.name).toEqual([]);
        if (p.name === '@metalearn/pipeline') {
          expect(files).toContain('dist/cli.js');
          expect(files).toContain('dist/pipeline.schema.json');
        }
        tarballs.push(path.join(tmp, p.filename));
      }

      const proj = path.join(tmp, 'consumer');
      fs.mkdirSync(proj);
      fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
      // --ignore-scripts: onnxruntime-node's install script fetches CUDA files; its CPU binary is bundled
      sh('npm', ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs], proj);
      fs.writeFileSync(
        path.join(proj, 'tiny.yaml'),
        [
          'name: packed default-like run',
          'data:\n  dataset: synthetic-glyphs\n  options: { numClasses: 40, itemsPerClass: 6, size: 16 }',
          'episodes: { ways: 5, shots: 1, queries: 2 }',
          'learner:\n  id: protonet\n  backbone: { type: conv4, filters: 8, blocks: 3 }',
          'train: { iterations: 3, metaBatch: 1, seed: 0, checkpointEvery: 3, valEvery: 3, valEpisodes: 2, logEvery: 1 }',
          'evaluate: { episodes: 4, ways: 5, shots: 1, queries: 2, engine: onnxruntime }',
          'export: { onnx: model.onnx, parity: true }',
          '',
        ].join('\n'),
      );
      fs.writeFileSync(
        path.join(proj, 'main.mjs'),
        `import * as fs from 'node:fs';
import { runPipeline } from '@metalearn/pipeline';
import { listLearners } from '@metalearn/core';
const s = await runPipeline('tiny.yaml', { out: 'out', progressStream: null, log: () => {} });
const schema = JSON.parse(fs.readFileSync(new URL(import.meta.resolve('@metalearn/pipeline/schema.json')), 'utf8'));
console.log(JSON.stringify({ accuracy: s.accuracy, ci95: s.ci95, onnx: s.onnx, backend: s.backend, learners: listLearners().map((l) => l.id), schemaTitle: schema.title }));
`,
      );
      const out = JSON.parse(sh('node', ['main.mjs'], proj).trim().split('\n').pop()!);
      expect(typeof out.accuracy).toBe('number');
      expect(out.accuracy).toBeGreaterThanOrEqual(0);
      expect(out.accuracy).toBeLessThanOrEqual(1);
      expect(out.onnx.parityOk).toBe(true);
      expect(out.learners).toContain('protonet');
      expect(out.schemaTitle).toBe('metalearn pipeline');
      expect(fs.statSync(path.join(proj, 'out', 'model.onnx')).size).toBeGreaterThan(1000);
      expect(fs.existsSync(path.join(proj, 'out', 'report.html'))).toBe(true);
      // the installed binary
      const bin = path.join(proj, 'node_modules', '.bin', 'metalearn');
      expect(sh(bin, ['validate', 'tiny.yaml'], proj)).toMatch(/tiny\.yaml: valid \(protonet on synthetic-glyphs/);
      expect(sh(bin, ['list'], proj)).toMatch(/protonet/);
      const ev = JSON.parse(sh(bin, ['eval', 'out', '--json'], proj).trim());
      expect(ev.mean).toBe(out.accuracy);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 300_000);
});
