export * from './builder.js';
export * from './context.js';
export * from './export.js';
export * from './runtime.js';
export * from './classifier.js';
