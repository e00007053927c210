export * from './builder.js';
export * from './context.js';
export * from './export.js';
export * from './runtime.js';
export * from './classifier.js';
export * from './trace.js';
export * from './autodiff.js';
export * from './graph.js';
