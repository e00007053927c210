export * from './types.js';
export * from './params.js';
export * from './losses.js';
export * from './inner.js';
export * from './maml.js';
export * from './imaml.js';
export * from './reptile.js';
export * from './learner.js';

import { registerOptimLearners } from './learner.js';
registerOptimLearners();
