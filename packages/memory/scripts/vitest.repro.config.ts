import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

const pkg = (name: string, dir = `packages/${name}`) => ({ find: `@metalearn/${name}`, replacement: path.resolve(__dirname, '../../..', dir, 'src/index.ts') });

/** Reproduction runs (not unit tests): `npx vitest run -c scripts/vitest.repro.config.ts scripts/<name>.repro.ts` */
export default defineConfig({
  resolve: { alias: [pkg('core'), pkg('data'), pkg('memory')] },
  test: { include: ['scripts/**/*.repro.ts'], testTimeout: 4 * 3600_000, hookTimeout: 600_000, pool: 'forks' },
});
