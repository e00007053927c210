/** Config schemas (JSON Schema, defaults) and validation for the memory-family learners. */

export interface SeqLearnerConfigBase {
  /** output classes C (episodes may use up to C ways) */
  classes: number;
  controllerSize: number;
  lr: number;
  /** global gradient-norm clip (0 = off) */
  gradClip: number;
}

export interface MannConfig extends SeqLearnerConfigBase {
  memorySlots: number;
  memoryWidth: number;
  readHeads: number;
  gamma: number;
  keyStrength: boolean;
  writeVector: 'add' | 'key';
  keyStrengthInit: number;
}

export type LstmMetaConfig = SeqLearnerConfigBase;

const base = {
  classes: { type: 'integer', minimum: 2, default: 5, description: 'output classes (max ways per episode)' },
  controllerSize: { type: 'integer', minimum: 1, default: 200, description: 'LSTM controller units' },
  lr: { type: 'number', exclusiveMinimum: 0, default: 1e-3, description: 'Adam learning rate' },
  gradClip: { type: 'number', minimum: 0, default: 10, description: 'global gradient-norm clip (0 = off)' },
};

export const mannConfigSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'MANN (Santoro et al. 2016)',
  type: 'object',
  additionalProperties: false,
  properties: {
    ...base,
    memorySlots: { type: 'integer', minimum: 1, default: 128, description: 'memory rows N' },
    memoryWidth: { type: 'integer', minimum: 1, default: 40, description: 'memory row width M' },
    readHeads: { type: 'integer', minimum: 1, default: 4, description: 'read heads R (also the n of the least-used indicator)' },
    gamma: { type: 'number', minimum: 0, maximum: 1, default: 0.95, description: 'usage decay' },
    keyStrength: { type: 'boolean', default: true, description: 'learned key strength on cosine similarities (not in the paper)' },
    keyStrengthInit: { type: 'number', minimum: 0, default: 0, description: 'initial key strength β0 > 1 (0 = the strength layer\'s own init, β ≈ 1.7)' },
    writeVector: { type: 'string', enum: ['add', 'key'], default: 'add', description: "what a head writes: 'add' a separate vector tanh(W_a h) (NTM, public reproductions), 'key' the read key (the paper's text)" },
  },
} as const;

export const lstmMetaConfigSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'LSTM meta-learner (Santoro et al. 2016 baseline)',
  type: 'object',
  additionalProperties: false,
  properties: { ...base },
} as const;

/**
 * Apply defaults and check a config against one of the schemas above (the subset of JSON Schema they
 * use). Errors name the learner and the field.
 */
export function resolveConfig<T>(learner: string, schema: { properties: Record<string, any> }, raw: unknown): T {
  if (raw !== undefined && (typeof raw !== 'object' || raw === null || Array.isArray(raw))) {
    throw new Error(`${learner} config: expected an object, got ${JSON.stringify(raw)}`);
  }
  const src = (raw ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(src)) {
    if (!(k in schema.properties)) throw new Error(`${learner} config: unknown field '${k}' (known: ${Object.keys(schema.properties).join(', ')})`);
  }
  for (const [k, s] of Object.entries(schema.properties)) {
    const v = src[k] ?? s.default;
    const bad = (why: string) => new Error(`${learner} config: field '${k}' ${why}, got ${JSON.stringify(src[k])}`);
    if (s.type === 'boolean') {
      if (typeof v !== 'boolean') throw bad('must be a boolean');
    } else if (s.type === 'string') {
      if (typeof v !== 'string') throw bad('must be a string');
      if (s.enum && !s.enum.includes(v)) throw bad(`must be one of ${s.enum.join(', ')}`);
    } else if (s.type === 'array') {
      if (!Array.isArray(v) || v.length === 0 || v.some((e) => !Number.isInteger(e) || e < (s.items?.minimum ?? -Infinity))) throw bad('must be a non-empty list of positive integers');
    } else {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw bad('must be a finite number');
      if (s.type === 'integer' && !Number.isInteger(v)) throw bad('must be an integer');
      if (s.minimum !== undefined && v < s.minimum) throw bad(`must be >= ${s.minimum}`);
      if (s.maximum !== undefined && v > s.maximum) throw bad(`must be <= ${s.maximum}`);
      if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) throw bad(`must be > ${s.exclusiveMinimum}`);
    }
    out[k] = v;
  }
  return out as T;
}
