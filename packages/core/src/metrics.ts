/** Fraction of positions where `pred[i] === target[i]`. */
export function accuracy(pred: ArrayLike<number>, target: ArrayLike<number>): number {
  if (pred.length !== target.length) {
    throw new RangeError(`accuracy: ${pred.length} predictions for ${target.length} targets`);
  }
  if (pred.length === 0) return NaN;
  let ok = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === target[i]) ok++;
  return ok / pred.length;
}

/** Median of `xs` (the mean of the middle two for an even count; NaN for none). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** ‖value − reference‖₂ / ‖reference‖₂ (gradient and parameter comparisons; a zero reference divides by 1e-30). */
export function relativeL2(value: ArrayLike<number>, reference: ArrayLike<number>): number {
  if (value.length !== reference.length) throw new RangeError(`relativeL2: ${value.length} values for ${reference.length} reference values`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < value.length; i++) {
    num += (value[i]! - reference[i]!) ** 2;
    den += reference[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/**
 * One-hot rows [labels.length, classes] (row-major float32), the label feeds of graph training; a
 * label outside 0..classes − 1 is an error saying `what` it is.
 */
export function oneHotRows(labels: ArrayLike<number>, classes: number, what = 'label'): Float32Array {
  const o = new Float32Array(labels.length * classes);
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i]!;
    if (!Number.isInteger(c) || c < 0 || c >= classes) throw new RangeError(`${what} ${c} is outside 0..${classes - 1}`);
    o[i * classes + c] = 1;
  }
  return o;
}

/** Row-wise argmax of a row-major [rows, cols] matrix. */
export function argmaxRows(data: ArrayLike<number>, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bv = -Infinity;
    for (let c = 0; c < cols; c++) {
      const v = data[r * cols + c]!;
      if (v > bv) {
        bv = v;
        best = c;
      }
    }
    out[r] = best;
  }
  return out;
}

export interface MeanCI {
  mean: number;
  /** half-width of the 95% confidence interval of the mean (1.96 · std / sqrt(n)) */
  ci95: number;
  std: number;
  n: number;
}

/**
 * Mean ± 95% confidence interval over episodes, as few-shot papers report it
 * (normal approximation, sample standard deviation).
 */
export function meanCI(values: ArrayLike<number>): MeanCI {
  const n = values.length;
  if (n === 0) return { mean: NaN, ci95: NaN, std: NaN, n: 0 };
  let s = 0;
  for (let i = 0; i < n; i++) s += values[i]!;
  const mean = s / n;
  if (n === 1) return { mean, ci95: NaN, std: NaN, n };
  let v = 0;
  for (let i = 0; i < n; i++) v += (values[i]! - mean) ** 2;
  const std = Math.sqrt(v / (n - 1));
  return { mean, ci95: (1.96 * std) / Math.sqrt(n), std, n };
}

/** "98.12 ± 0.35 %" */
export function formatPercentCI(m: MeanCI, digits = 2): string {
  return `${(100 * m.mean).toFixed(digits)} ± ${(100 * m.ci95).toFixed(digits)} %`;
}
