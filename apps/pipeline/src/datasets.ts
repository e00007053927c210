import * as path from 'node:path';
import { createDataset, datasetConfigSchema, listDatasetTypes, type ClassDataset } from '@metalearn/data';

/** Dataset types a pipeline can name under `data.dataset` (classification datasets of @metalearn/data). */
export function datasetIds(): string[] {
  return listDatasetTypes().filter((t) => t !== 'sinusoid');
}

/** JSON Schema of one dataset type's options (`{type, ...options}`), from the data registry. */
export function datasetSchema(id: string): Record<string, unknown> | undefined {
  const variants = (datasetConfigSchema()['oneOf'] ?? []) as { properties?: { type?: { const?: string } } }[];
  return variants.find((v) => v.properties?.type?.const === id) as Record<string, unknown> | undefined;
}

const PATH_KEYS = ['root', 'splitsDir', 'imagesDir'];

/**
 * Open a dataset by type id and options. Relative paths in `root`, `splitsDir`, `imagesDir` are
 * resolved against the pipeline file's folder.
 */
export async function openDataset(id: string, options: Record<string, unknown>, pipelineFile: string): Promise<ClassDataset> {
  const base = path.dirname(path.resolve(pipelineFile));
  const opts: Record<string, unknown> = { ...options };
  for (const k of PATH_KEYS) {
    const v = opts[k];
    if (typeof v === 'string' && !path.isAbsolute(v)) opts[k] = path.resolve(base, v);
  }
  const ds = await createDataset({ type: id, ...opts });
  if (ds.kind !== 'classification') throw new Error(`dataset '${id}' is not a classification dataset; few-shot pipelines need classes of examples`);
  return ds;
}
