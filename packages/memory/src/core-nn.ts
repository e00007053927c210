/**
 * The pieces of @metalearn/core's nn and onnx modules this package builds on (functional layers,
 * LSTM cell with its ONNX emitter, graph builder), imported in one place.
 */
export { Dense } from '../../core/src/nn/layers.js';
export { lstmCell, initLSTMCell, lstmCellOnnx, addLSTMCellInitializers, type LSTMCellParams } from '../../core/src/nn/lstm.js';
export type { Params } from '../../core/src/nn/types.js';
export { OnnxGraphBuilder } from '../../core/src/onnx/builder.js';
export { ExportContext } from '../../core/src/onnx/context.js';
