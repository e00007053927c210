import { splitClasses, withSplits, type ClassDataset } from './dataset.js';
import { DataError } from './errors.js';
import { SyntheticGlyphs, type GlyphOptions } from './glyphs.js';
import { loadIdx, type IdxOptions } from './idx.js';
import { loadImageFolder, type ImageFolderOptions } from './imagefolder.js';
import { loadOmniglot, type OmniglotOptions } from './omniglot.js';
import { SinusoidTasks, type SinusoidOptions } from './sinusoid.js';
import { loadUea, type UeaOptions } from './uea.js';

/** Random class split applied after loading (any classification type): fractions + seed. */
export interface ClassSplitOption {
  fractions: Record<string, number>;
  seed?: number;
}

export type DatasetConfig =
  | ({ type: 'omniglot' } & OmniglotOptions & { classSplit?: ClassSplitOption })
  | ({ type: 'image-folder' } & ImageFolderOptions & { classSplit?: ClassSplitOption })
  | ({ type: 'idx' } & IdxOptions & { classSplit?: ClassSplitOption })
  | ({ type: 'uea' } & UeaOptions & { classSplit?: ClassSplitOption })
  | ({ type: 'synthetic-glyphs' } & GlyphOptions & { classSplit?: ClassSplitOption })
  | ({ type: 'sinusoid' } & SinusoidOptions);

export type AnyDataset = ClassDataset | SinusoidTasks;

type Factory = (opts: any) => Promise<AnyDataset>;
const factories = new Map<string, { create: Factory; schema: Record<string, unknown> }>();

/** Register (or replace) a dataset type for createDataset / the pipeline config. */
export function registerDatasetType(type: string, create: Factory, schema: Record<string, unknown>): void {
  factories.set(type, { create, schema });
}

export function listDatasetTypes(): string[] {
  return [...factories.keys()].sort();
}

/** Build a dataset from a config object `{type, ...options}` (as in a pipeline YAML file). */
export async function createDataset(config: DatasetConfig | ({ type: string } & Record<string, unknown>)): Promise<AnyDataset> {
  if (!config || typeof config !== 'object' || typeof config.type !== 'string') {
    throw new DataError(`dataset config: field 'type' is required (one of ${listDatasetTypes().join(', ')})`);
  }
  const f = factories.get(config.type);
  if (!f) throw new DataError(`dataset config: unknown type '${config.type}' (expected one of ${listDatasetTypes().join(', ')})`);
  const { type: _t, classSplit, ...opts } = config as { type: string; classSplit?: ClassSplitOption } & Record<string, unknown>;
  const ds = await f.create(opts);
  if (classSplit && ds.kind === 'classification') {
    if (!classSplit.fractions || typeof classSplit.fractions !== 'object') {
      throw new DataError(`dataset config: classSplit.fractions must be an object like {train: 0.6, val: 0.2, test: 0.2}`);
    }
    const parts = splitClasses(ds.numClasses, classSplit.fractions, classSplit.seed ?? 0);
    return withSplits(ds, { ...parts, all: Array.from({ length: ds.numClasses }, (_, i) => i) });
  }
  return ds;
}

const cache = { description: 'binary cache: true = default folder ($METALEARN_CACHE or ~/.cache/metalearn), a folder path, or false', anyOf: [{ type: 'boolean' }, { type: 'string' }] };
const classSplit = {
  type: 'object',
  description: 'random seeded class split applied after loading',
  properties: { fractions: { type: 'object', additionalProperties: { type: 'number', minimum: 0 } }, seed: { type: 'integer' } },
  required: ['fractions'],
  additionalProperties: false,
};
const range = { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 };
const stringOrList = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }] };

const obj = (type: string, properties: Record<string, unknown>, required: string[] = []) => ({
  type: 'object',
  properties: { type: { const: type }, ...properties },
  required: ['type', ...required],
  additionalProperties: false,
});

const schemas: Record<string, Record<string, unknown>> = {
  omniglot: obj('omniglot', {
    root: { type: 'string', description: 'folder with images_background/ and images_evaluation/ (folders or .zip)' },
    size: { type: 'integer', minimum: 1, default: 28 },
    rotations: { type: 'boolean', default: true },
    split: { enum: ['vinyals', 'maml', 'lake'], default: 'vinyals' },
    splitSeed: { type: 'integer', default: 0 },
    splitsDir: { type: 'string' },
    classSplit,
    sets: { type: 'array', items: { enum: ['background', 'evaluation'] }, minItems: 1 },
    alphabets: { type: 'array', items: { type: 'string' }, minItems: 1 },
    cache,
  }, ['root']),
  'image-folder': obj('image-folder', {
    root: { type: 'string' },
    size: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'array', items: { type: 'integer', minimum: 1 }, minItems: 2, maxItems: 2 }] },
    channels: { enum: [1, 3], default: 3 },
    csv: { type: 'object', additionalProperties: { type: 'string' }, description: 'split name -> CSV file (filename,label)' },
    imagesDir: { type: 'string' },
    extensions: { type: 'array', items: { type: 'string' } },
    maxItemsPerClass: { type: 'integer', minimum: 1 },
    invert: { type: 'boolean', default: false },
    name: { type: 'string' },
    cache,
    classSplit,
  }, ['root', 'size']),
  idx: obj('idx', { images: stringOrList, labels: stringOrList, name: { type: 'string' }, scale: { type: 'number' }, cache, classSplit }, ['images', 'labels']),
  uea: obj('uea', {
    root: { type: 'string' },
    name: { type: 'string' },
    files: { type: 'array', items: { type: 'string' }, minItems: 1 },
    parts: { type: 'array', items: { enum: ['train', 'test'] }, minItems: 1 },
    normalize: { enum: ['instance', 'dataset', 'none'], default: 'instance' },
    missing: { enum: ['interpolate', 'zero'], default: 'interpolate' },
    length: { type: 'integer', minimum: 1 },
    resample: { type: 'boolean', default: false },
    cache,
    classSplit,
  }),
  'synthetic-glyphs': obj('synthetic-glyphs', {
    numClasses: { type: 'integer', minimum: 1, default: 600 },
    itemsPerClass: { type: 'integer', minimum: 1, default: 20 },
    size: { type: 'integer', minimum: 1, default: 28 },
    seed: { type: 'integer', default: 0 },
    splitFractions: { type: 'object', additionalProperties: { type: 'number', minimum: 0 } },
    jitter: { type: 'number', minimum: 0, default: 0.05 },
    distortion: { type: 'number', minimum: 0, default: 1.6 },
    classSplit,
  }),
  sinusoid: obj('sinusoid', { amplitude: range, phase: range, xRange: range }),
};

registerDatasetType('omniglot', (o: OmniglotOptions) => loadOmniglot(o), schemas['omniglot']!);
registerDatasetType('image-folder', (o: ImageFolderOptions) => loadImageFolder(o), schemas['image-folder']!);
registerDatasetType('idx', (o: IdxOptions) => loadIdx(o), schemas['idx']!);
registerDatasetType('uea', (o: UeaOptions) => loadUea(o), schemas['uea']!);
registerDatasetType('synthetic-glyphs', async (o: GlyphOptions) => new SyntheticGlyphs(o), schemas['synthetic-glyphs']!);
registerDatasetType('sinusoid', async (o: SinusoidOptions) => new SinusoidTasks(o), schemas['sinusoid']!);

/** JSON Schema (draft 2020-12 / ajv) of a dataset config: one variant per registered type. */
export function datasetConfigSchema(): Record<string, unknown> {
  return {
    $id: 'metalearn/dataset-config',
    description: 'dataset: {type, ...options}',
    oneOf: listDatasetTypes().map((t) => factories.get(t)!.schema),
  };
}
