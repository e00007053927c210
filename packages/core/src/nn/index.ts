export * from './types.js';
export * from './init.js';
export * from './layers.js';
export * from './lstm.js';
export * from './sequential.js';
export * from './backbones.js';
