/** The training workloads of /work/shared/bench/torch_ref.py, by the names it prints. */
export const TORCH_REF_WORKLOADS = [
  'conv4_fwd_batch80',
  'conv4_fwd_bwd_batch80',
  'protonet_5w1s_episode',
  'fomaml_5w1s_metabatch4_1step',
  'maml2_5w1s_metabatch4_1step',
  'maml2_5w1s_metabatch4_5step',
] as const;

/**
 * The training workloads again, each step one onnxruntime graph (forward, loss and gradients — for
 * MAML the inner loop and its second-order terms too; `core/onnx/graph.ts`), on all cores.
 */
export const GRAPH_WORKLOADS = [
  'graph_conv4_fwd_bwd_batch80',
  'graph_protonet_5w1s_episode',
  'graph_fomaml_5w1s_metabatch4_1step',
  'graph_maml2_5w1s_metabatch4_1step',
  'graph_maml2_5w1s_metabatch4_5step',
] as const;

/** Workload names of the benchmark: torch_ref.py's, the graph-engine ones, plus the onnxruntime forward and a 600-episode onnxruntime evaluation. */
export const BENCH_WORKLOADS = [...TORCH_REF_WORKLOADS, ...GRAPH_WORKLOADS, 'onnx_conv4_fwd_batch80', 'protonet_eval_5w1s_600ep_onnx'] as const;
export type BenchWorkload = (typeof BENCH_WORKLOADS)[number];
