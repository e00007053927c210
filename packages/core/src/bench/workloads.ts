/** The training workloads of /work/shared/bench/torch_ref.py, by the names it prints. */
export const TORCH_REF_WORKLOADS = [
  'conv4_fwd_batch80',
  'conv4_fwd_bwd_batch80',
  'protonet_5w1s_episode',
  'fomaml_5w1s_metabatch4_1step',
  'maml2_5w1s_metabatch4_1step',
  'maml2_5w1s_metabatch4_5step',
] as const;

/** Workload names of the benchmark: torch_ref.py's, plus the onnxruntime forward and a 600-episode onnxruntime evaluation. */
export const BENCH_WORKLOADS = [...TORCH_REF_WORKLOADS, 'onnx_conv4_fwd_batch80', 'protonet_eval_5w1s_600ep_onnx'] as const;
export type BenchWorkload = (typeof BENCH_WORKLOADS)[number];
