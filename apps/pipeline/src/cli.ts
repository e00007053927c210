#!/usr/bin/env node
import { EXIT } from './run.js';
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.env['METALEARN_DEBUG'] && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(EXIT.failure);
  },
);
