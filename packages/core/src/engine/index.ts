export { initEngine, engineInfo, type EngineInfo, type BackendName, type InitEngineOptions } from './init.js';
export { installOrtKernels, ortKernelInfo, ortKernelThreads, ortConvPlan, ortMatMulPlan, ORT_MATMUL_MIN_MACS, ORT_MATMUL_SLOW_MIN_MACS, ORT_ELEMENTWISE_MIN_SIZE } from './ort-kernels.js';
export { registerProjectGradients, projectGradientKernels } from './gradients.js';
export {
  conv2d,
  conv1d,
  maxPool2d,
  avgPool2d,
  globalAvgPool,
  batchNormTrain,
  batchNormInfer,
  dense,
  crossEntropy,
  logSoftmax,
  type Padding,
} from './ops.js';
export { conv2dInputGrad, conv2dFilterGrad, convGeometry, type ConvGeometry, type ConvPad } from './conv.js';
export { gradCheck, type GradCheckOptions, type GradCheckRow } from './gradcheck.js';
