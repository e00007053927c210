export * from './validate.js';
export * from './run.js';
export * from './report.js';
export * from './progress.js';
export * from './datasets.js';
export * from './main.js';
export * from './commands.js';
export * from './inputs.js';
