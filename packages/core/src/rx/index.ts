export * from './operators.js';
