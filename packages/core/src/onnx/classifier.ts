import * as tf from '@tensorflow/tfjs-core';
import type { Episode, FewShotClassifier, MetaLearner, OnnxModel } from '../contracts.js';
import { accuracy, argmaxRows } from '../metrics.js';
import { OnnxRunner } from './runtime.js';
import type { Params } from '../nn/types.js';
import type { Sequential } from '../nn/sequential.js';
import { exportOnnx } from './export.js';

export interface SequentialClassifierOptions {
  /** learner id, used in error messages and the ONNX metadata */
  learner: string;
  ways: number;
  /** buffers (batch-norm running statistics) */
  state?: Params;
  /** batch-norm uses the statistics of the batch being classified (as MAML evaluates) */
  batchStats?: boolean;
}

/**
 * The adapted classifier of a learner whose adapted state is a {@link Sequential} plus its parameters
 * (backbone + a head with prototypes / support embeddings baked in, or fast weights). `predict` runs
 * the model in tfjs; `toOnnx` exports the very same layer list. The classifier owns `params` and
 * `state` and disposes them in `dispose()`; using it afterwards is an error.
 */
export function sequentialClassifier(model: Sequential, params: Params, opts: SequentialClassifierOptions): FewShotClassifier {
  const { learner, ways, state, batchStats } = opts;
  let disposed = false;
  const check = (): void => {
    if (disposed) throw new Error(`${learner}: classifier used after dispose()`);
  };
  return {
    predict(x: tf.Tensor): tf.Tensor {
      check();
      return model.apply(params, x, { training: false, state, batchStats });
    },
    toOnnx(): OnnxModel {
      check();
      return exportOnnx(model, params, { state, batchStats, graphName: `${learner}-adapted`, metadata: { learner, ways: String(ways) } });
    },
    dispose(): void {
      if (disposed) return;
      disposed = true;
      tf.dispose(Object.values(params));
      if (state) tf.dispose(Object.values(state));
    },
  };
}

/**
 * Query accuracy of one episode scored in onnxruntime: adapt `learner` on the support set, export the
 * adapted classifier, run the query set through it. One intra-op thread: a small batch per session
 * has less overhead, and the result does not depend on the core count.
 */
export async function onnxEpisodeAccuracy(learner: MetaLearner, ep: Episode): Promise<number> {
  const clf = learner.adapt(ep.support, ep.ways);
  try {
    const runner = await OnnxRunner.create(clf.toOnnx(), { intraOpNumThreads: 1 });
    try {
      const r = await runner.run(ep.query.x.dataSync() as Float32Array, [...ep.query.x.shape]);
      return accuracy(argmaxRows(r.data, r.shape[0]!, r.shape[1]!), ep.query.y);
    } finally {
      await runner.release();
    }
  } finally {
    clf.dispose();
  }
}
