export * from './addressing.js';
export * from './names.js';
export * from './config.js';
export * from './models.js';
export * from './sequence.js';
export * from './learner.js';
export * from './onnx-export.js';
export * from './backbone.js';
export * from './metanet.js';
export * from './ideme.js';
/** moved to core (the pipeline reads it); re-exported for compatibility */
export type { InstanceAccuracy } from '@metalearn/core';

import { registerLearner } from '@metalearn/core';
import { lstmMetaFactory, mannFactory } from './learner.js';
import { metaNetFactory } from './metanet.js';
import { idemeFactory } from './ideme.js';

/** Register the memory-family learners with core's registry (idempotent). */
export function registerMemoryLearners(): void {
  registerLearner(mannFactory);
  registerLearner(lstmMetaFactory);
  registerLearner(metaNetFactory);
  registerLearner(idemeFactory);
}
registerMemoryLearners();
export * from './variables.js';
