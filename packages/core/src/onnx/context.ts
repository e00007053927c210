import type { Params } from '../nn/types.js';
import type { OnnxGraphBuilder } from './builder.js';

/**
 * Memory layout of the value flowing through the exported graph. tfjs tensors are channels-last
 * ([n, h, w, c] / [n, len, c]); ONNX Conv, Pool and BatchNormalization want channels-first
 * ([n, c, h, w] / [n, c, len]). For values of rank ≤ 2 ([n, features]) both layouts coincide.
 */
export type Layout = 'channelsLast' | 'channelsFirst';

/**
 * State of an export walk, handed to every {@link Layer.toOnnx}. The exporter sets `shape` and
 * `state` before each layer; layers change `layout` only through {@link channelsFirst} /
 * {@link channelsLast} (or by assigning it when they produce a value of a different layout).
 */
export class ExportContext {
  /** layout of the current value */
  layout: Layout = 'channelsLast';
  /** per-example tfjs (channels-last) shape of the current value; -1 = dynamic */
  shape: number[] = [];
  /** the current layer's buffers (local keys), when the caller passed a state */
  state?: Params;
  /** export batch-norm with batch statistics (ReduceMean over the batch) instead of running stats */
  readonly batchStats: boolean;

  constructor(
    readonly graph: OnnxGraphBuilder,
    opts: { batchStats?: boolean } = {},
  ) {
    this.batchStats = opts.batchStats ?? false;
  }

  /** rank of the current value including the batch dimension */
  get rank(): number {
    return this.shape.length + 1;
  }

  /** Return `input` in channels-first layout, inserting a Transpose if needed. */
  channelsFirst(input: string): string {
    if (this.layout === 'channelsFirst' || this.rank <= 2) {
      this.layout = 'channelsFirst';
      return input;
    }
    const r = this.rank;
    const perm = [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
    this.layout = 'channelsFirst';
    return this.graph.addNode('Transpose', [input], { perm }, { output: this.graph.uniqueName('to_channels_first') });
  }

  /** Return `input` in channels-last (tfjs) layout, inserting a Transpose if needed. */
  channelsLast(input: string): string {
    if (this.layout === 'channelsLast' || this.rank <= 2) {
      this.layout = 'channelsLast';
      return input;
    }
    const r = this.rank;
    const perm = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];
    this.layout = 'channelsLast';
    return this.graph.addNode('Transpose', [input], { perm }, { output: this.graph.uniqueName('to_channels_last') });
  }

  /** Index of the channel axis of the current value (in its current layout, batch included). */
  get channelAxis(): number {
    return this.layout === 'channelsFirst' ? 1 : this.rank - 1;
  }
}
