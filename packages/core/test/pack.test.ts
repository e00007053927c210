/**
 * Publishing check: `npm pack` @metalearn/core, install the tarball into a fresh temporary project
 * (its dependencies from the npm cache / registry), import it under plain Node (no vitest, no path
 * aliases) and run a Conv-4 forward pass plus an ONNX export checked in onnxruntime.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function sh(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
}

describe('npm pack @metalearn/core', () => {
  it('installs from its tarball and runs a forward pass under plain Node', () => {
    if (!fs.existsSync(path.join(pkgDir, 'dist', 'index.js'))) sh('npx', ['tsc', '-p', 'tsconfig.lib.json'], pkgDir);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-pack-'));
    try {
      const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', tmp], pkgDir)) as { filename: string; files: { path: string }[] }[];
      const files = packed[0]!.files.map((f) => f.path);
      expect(files).toContain('dist/index.js');
      expect(files).toContain('dist/index.d.ts');
      expect(files.some((f) => f.startsWith('src/') || f.startsWith('test/'))).toBe(false);

      const proj = path.join(tmp, 'consumer');
      fs.mkdirSync(proj);
      fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
      // --ignore-scripts: onnxruntime-node's install script fetches CUDA files; its CPU binary is bundled
      sh('npm', ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', path.join(tmp, packed[0]!.filename)], proj);
      fs.writeFileSync(
        path.join(proj, 'main.mjs'),
        `import * as tf from '@tensorflow/tfjs-core';
import { initEngine, conv4, Rng, exportOnnx, verifyOnnx } from '@metalearn/core';
const info = await initEngine({ backend: 'wasm', quiet: true });
const model = conv4({ inputShape: [28, 28, 1], filters: 8 });
const params = model.init(new Rng(1));
const state = model.initState();
const x = tf.tensor4d(new Rng(2).normalArray(3 * 28 * 28), [3, 28, 28, 1]);
const y = model.apply(params, x, { training: false, state });
const onnx = exportOnnx(model, params, { state });
const { maxAbsDiff } = await verifyOnnx(onnx, x, y);
console.log(JSON.stringify({ backend: info.backend, shape: y.shape, maxAbsDiff, finite: y.dataSync().every(Number.isFinite) }));
`,
      );
      const out = JSON.parse(sh('node', ['main.mjs'], proj).trim().split('\n').pop()!);
      expect(out.backend).toBe('wasm');
      expect(out.shape).toEqual([3, 8]);
      expect(out.finite).toBe(true);
      expect(out.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 300_000);
});
