import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const PACKAGE_DIRS = ['packages/core', 'packages/data', 'packages/metric', 'packages/memory', 'packages/optim', 'apps/pipeline'].map((p) => path.join(repoRoot, p));
const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');

function newestMtime(dir: string): number {
  let m = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const f = path.join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newestMtime(f) : fs.statSync(f).mtimeMs);
  }
  return m;
}

/**
 * Make sure every package has a dist/: packages whose dist is missing are built (`tsc -p
 * tsconfig.lib.json`); the pipeline's own dist is also rebuilt when its src/ is newer, so the
 * binary under test is the current code. Returns the packages that were built.
 */
export function ensureBuilt(): string[] {
  const built: string[] = [];
  for (const dir of PACKAGE_DIRS) {
    const entry = path.join(dir, 'dist', 'index.js');
    const own = dir.endsWith(path.join('apps', 'pipeline'));
    const stamp = path.join(repoRoot, 'node_modules', '.cache', 'metalearn-test-builds', `${path.basename(dir)}.stamp`);
    const builtAt = Math.max(fs.existsSync(entry) ? fs.statSync(entry).mtimeMs : 0, fs.existsSync(stamp) ? fs.statSync(stamp).mtimeMs : 0);
    const stale = !fs.existsSync(entry) || (own && newestMtime(path.join(dir, 'src')) > builtAt);
    if (!stale) continue;
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.lib.json'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    if (own) {
      fs.copyFileSync(path.join(dir, 'src', 'pipeline.schema.json'), path.join(dir, 'dist', 'pipeline.schema.json'));
      fs.chmodSync(path.join(dir, 'dist', 'cli.js'), 0o755);
    }
    fs.mkdirSync(path.dirname(stamp), { recursive: true });
    fs.writeFileSync(stamp, new Date().toISOString() + '\n');
    built.push(path.relative(repoRoot, dir));
  }
  return built;
}
