import { describe, expect, it } from 'vitest';
import { parityBound } from '../src/onnx/runtime.js';

describe('parityBound', () => {
  it('is the tolerance for logits up to 1 in size, and scales with larger logits', () => {
    expect(parityBound(1e-4, { data: new Float32Array([0.2, -0.9]), shape: [2] })).toBeCloseTo(1e-4, 12);
    expect(parityBound(1e-4, { data: new Float32Array([3, -10, 4]), shape: [3] })).toBeCloseTo(1e-3, 12);
  });
  it('non-finite logits give a bound nothing passes', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const b = parityBound(1e-4, { data: new Float32Array([1, bad]), shape: [2] });
      expect(0 <= b).toBe(false);
      expect(Infinity <= b).toBe(false);
    }
  });
});
