// Module hooks that let a worker thread run this repository's TypeScript sources (used only when
// @metalearn/core itself runs from sources, e.g. under vitest; built code never needs them):
// `@metalearn/<pkg>` resolves to the source entry named in tsconfig.base.json `paths`, a relative
// `./x.js` import from a .ts file resolves to `./x.ts` when there is no `./x.js`, and .ts files are
// transpiled with TypeScript's transpileModule (type-only imports elided, as isolatedModules); the
// output is cached by content hash in $TMPDIR/metalearn-ts-cache so later workers start fast.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = new URL('../../../../', import.meta.url);
const base = JSON.parse(readFileSync(new URL('tsconfig.base.json', root), 'utf8'));
const paths = new Map(Object.entries(base.compilerOptions?.paths ?? {}).map(([k, v]) => [k, new URL(v[0], root).href]));
let ts = null;
const cacheDir = join(tmpdir(), 'metalearn-ts-cache');

export async function resolve(specifier, context, next) {
  const mapped = paths.get(specifier);
  if (mapped) return { url: mapped, shortCircuit: true };
  const parent = context.parentURL;
  if (parent && parent.endsWith('.ts') && /^\.\.?\//.test(specifier) && specifier.endsWith('.js')) {
    const u = new URL(specifier, parent);
    if (!existsSync(fileURLToPath(u))) {
      const t = new URL(specifier.slice(0, -3) + '.ts', parent);
      if (existsSync(fileURLToPath(t))) return { url: t.href, shortCircuit: true };
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.startsWith('file:') && url.endsWith('.ts')) {
    const file = fileURLToPath(url);
    const text = readFileSync(file, 'utf8');
    const key = createHash('sha1').update(file).update('\0').update(text).digest('hex');
    const cached = join(cacheDir, `${key}.js`);
    if (existsSync(cached)) return { format: 'module', source: readFileSync(cached, 'utf8'), shortCircuit: true };
    ts ??= (await import('typescript')).default;
    const out = ts.transpileModule(text, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: false },
    });
    try {
      mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}.${process.hrtime.bigint()}`;
      writeFileSync(tmp, out.outputText);
      renameSync(tmp, cached);
    } catch {
      // the cache is an optimisation only
    }
    return { format: 'module', source: out.outputText, shortCircuit: true };
  }
  return next(url, context);
}
