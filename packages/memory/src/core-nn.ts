/**
 * The pieces of @metalearn/core's nn and onnx modules this package builds on (functional layers,
 * LSTM cell with its ONNX emitter, graph builder), imported in one place.
 */
export { Dense, lstmCell, lstmGates, initLSTMCell, lstmCellOnnx, addLSTMCellInitializers, OnnxGraphBuilder, ExportContext } from '@metalearn/core';
export type { LSTMCellParams, Params } from '@metalearn/core';
