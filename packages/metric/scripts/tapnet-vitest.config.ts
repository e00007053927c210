import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

const pkg = (name: string) => ({ find: `@metalearn/${name}`, replacement: path.resolve(import.meta.dirname, '../..', name, 'src/index.ts') });

/** TapNet reproduction runs (not unit tests): `npx vitest run -c scripts/tapnet-vitest.config.ts scripts/tapnet-uea.repro.ts` */
export default defineConfig({
  resolve: { alias: [pkg('core'), pkg('data'), pkg('metric')] },
  test: { include: ['scripts/tapnet-*.repro.ts'], testTimeout: 4 * 3600_000, hookTimeout: 600_000, pool: 'forks' },
});
