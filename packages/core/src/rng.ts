import seedrandom from 'seedrandom';

/** Serialisable state of an {@link Rng}: enough to resume the exact stream. */
export interface RngState {
  seed: string;
  /** seedrandom's internal ARC4 state (alea/arc4 state object). */
  inner: unknown;
  /** the cached second Box–Muller normal, if any */
  spare?: number | null;
}

/**
 * Seeded random number generator (seedrandom's ARC4, the default `seedrandom()` generator).
 * Same seed → same stream on every machine; `state()` / `Rng.fromState()` resume it exactly.
 */
export class Rng {
  private prng: seedrandom.StatefulPRNG<seedrandom.State.Arc4>;
  readonly seed: string;
  private spare: number | null = null;

  constructor(seed: number | string, inner?: unknown) {
    this.seed = String(seed);
    this.prng = seedrandom(this.seed, { state: (inner as seedrandom.State.Arc4 | undefined) ?? true });
  }

  static fromState(s: RngState): Rng {
    const r = new Rng(s.seed, s.inner);
    r.spare = s.spare ?? null;
    return r;
  }

  state(): RngState {
    return { seed: this.seed, inner: this.prng.state(), spare: this.spare };
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.prng.double();
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Rng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller). */
  normal(mean = 0, std = 1): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return mean + std * s;
    }
    let u = 0;
    while (u <= Number.EPSILON) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return mean + std * r * Math.cos(2 * Math.PI * v);
  }

  /** Fisher–Yates shuffle in place; returns the array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
    return a;
  }

  /** k distinct indices from [0, n) in random order. */
  sample(n: number, k: number): number[] {
    if (k > n) throw new RangeError(`Rng.sample: cannot draw ${k} distinct items from ${n}`);
    const idx = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + this.int(n - i);
      const t = idx[i]!;
      idx[i] = idx[j]!;
      idx[j] = t;
    }
    return idx.slice(0, k);
  }

  /** A child generator with an independent, deterministic stream. */
  fork(tag: string | number): Rng {
    return new Rng(`${this.seed}/${tag}/${this.int(2 ** 31)}`);
  }

  /** Float32Array of normals. */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal(mean, std);
    return out;
  }

  /** Float32Array of uniforms in [lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniform(lo, hi);
    return out;
  }
}
