import { defineConfig } from 'vitest/config';

// Root config: one vitest run over every project (used by `npm test` and .ci/run).
export default defineConfig({
  resolve: { tsconfigPaths: true },
  test: {
    projects: ['packages/*', 'apps/*'],
  },
});
