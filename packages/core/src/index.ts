export * from './contracts.js';
export * from './rng.js';
export * from './registry.js';
export * from './metrics.js';
export * from './checkpoint.js';
export * from './rx/index.js';
