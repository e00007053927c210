// Worker entry used when @metalearn/core runs from its TypeScript sources (vitest): install the
// source hooks in this thread, then run the real worker (worker.ts) from source.
import { register } from 'node:module';

register('./source-hooks.mjs', import.meta.url);
await import('./worker.ts');
