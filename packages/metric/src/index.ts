import { registerLearner } from '@metalearn/core';
import { protoNetFactory } from './protonet.js';
import { matchingNetFactory } from './matching.js';

export * from './heads.js';
export * from './backbone.js';
export * from './embedding-learner.js';
export * from './protonet.js';
export * from './matching.js';

registerLearner(protoNetFactory);
registerLearner(matchingNetFactory);

export * from './learner-base.js';
export * from './siamese-distort.js';
export * from './siamese.js';
export * from './tapnet.js';
import { siameseFactory } from './siamese.js';
import { tapNetFactory } from './tapnet.js';
registerLearner(siameseFactory);
registerLearner(tapNetFactory);
export * from './graph-engine.js';
