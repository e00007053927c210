import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import { getLearner, listLearners } from '@metalearn/core';

/** One problem in a pipeline file: where (JSON pointer + line) and what. */
export interface PipelineIssue {
  /** JSON pointer of the offending value, e.g. `/train/metaBatch` ('' = the whole file) */
  path: string;
  /** 1-based line in the file, when known */
  line?: number;
  message: string;
  /** allowed values / property names, when the rule has a closed list */
  allowed?: unknown[];
}

export class PipelineValidationError extends Error {
  constructor(
    readonly file: string,
    readonly issues: PipelineIssue[],
  ) {
    super(`${file}: ${issues.length} error${issues.length === 1 ? '' : 's'}\n` + issues.map((i) => '  ' + formatIssue(file, i)).join('\n'));
    this.name = 'PipelineValidationError';
  }
}

export function formatIssue(file: string, i: PipelineIssue): string {
  const where = `${path.basename(file)}${i.line ? `:${i.line}` : ''}`;
  const allowed = i.allowed && i.allowed.length > 0 ? ` (allowed: ${i.allowed.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(', ')})` : '';
  return `${where} ${i.path || '/'}: ${i.message}${allowed}`;
}

/** The published JSON Schema of pipeline files (dist/pipeline.schema.json beside this module). */
export function pipelineSchema(): Record<string, unknown> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return JSON.parse(fs.readFileSync(path.join(here, 'pipeline.schema.json'), 'utf8')) as Record<string, unknown>;
}

export interface PipelineConfig {
  name?: string;
  description?: string;
  plugins: string[];
  data: { dataset: string; options: Record<string, unknown>; trainSplit: string; valSplit: string; testSplit: string };
  episodes: { ways: number; shots: number; queries: number; withinGroup?: string; augment?: { translate?: number } };
  learner: { id: string; [option: string]: unknown };
  train: {
    iterations: number;
    timeBudgetSeconds?: number;
    metaBatch: number;
    seed: number;
    checkpointEvery: number;
    valEvery: number;
    valEpisodes: number;
    logEvery: number;
  };
  evaluate: {
    episodes: number;
    ways: number;
    shots: number;
    queries: number;
    withinGroup?: string;
    engine: 'onnxruntime' | 'tfjs';
    mode: 'episodes' | 'full';
    dataset?: { dataset: string; options: Record<string, unknown>; split: string };
  };
  export: { onnx: string | false; parity: boolean; tolerance: number };
}

function newAjv(): Ajv {
  return new Ajv({ strict: true, useDefaults: true, allErrors: true, verbose: true, strictTypes: false });
}

let pipelineValidator: ValidateFunction | undefined;
function getPipelineValidator(): ValidateFunction {
  pipelineValidator ??= newAjv().compile(pipelineSchema());
  return pipelineValidator;
}

function ptrSegments(ptr: string): string[] {
  return ptr === '' ? [] : ptr.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function lineOf(doc: Document | undefined, lc: LineCounter | undefined, ptr: string): number | undefined {
  if (!doc || !lc) return undefined;
  let segs = ptrSegments(ptr);
  // walk up until a node exists (a missing property is reported on its parent)
  while (true) {
    const node = segs.length === 0 ? doc.contents : doc.getIn(segs.map((s) => (/^\d+$/.test(s) ? Number(s) : s)), true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
    if (segs.length === 0) return undefined;
    segs = segs.slice(0, -1);
  }
}

/** Ajv errors → issues with JSON paths and closed lists of allowed values. */
export function ajvIssues(errors: ErrorObject[] | null | undefined, prefix = ''): PipelineIssue[] {
  const out: PipelineIssue[] = [];
  const errs = errors ?? [];
  // an anyOf failure says everything its branches said; keep just the summary
  const anyOfPaths = new Set(errs.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf').map((e) => e.instancePath));
  for (const e of errs) {
    const p = prefix + e.instancePath;
    if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && anyOfPaths.has(e.instancePath) && e.schemaPath.includes('/anyOf/')) continue;
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = (e.params as { additionalProperty: string }).additionalProperty;
        const props = Object.keys(((e.parentSchema as { properties?: object })?.properties ?? {}) as object).filter((k) => k !== '$schema');
        out.push({ path: `${p}/${prop}`, message: `unknown property '${prop}'`, allowed: props });
        break;
      }
      case 'required': {
        const prop = (e.params as { missingProperty: string }).missingProperty;
        out.push({ path: `${p}/${prop}`, message: `required property '${prop}' is missing` });
        break;
      }
      case 'enum':
        out.push({ path: p, message: `must be one of the allowed values, got ${JSON.stringify(e.data)}`, allowed: (e.params as { allowedValues: unknown[] }).allowedValues });
        break;
      case 'const':
        out.push({ path: p, message: `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` });
        break;
      case 'anyOf':
      case 'oneOf': {
        const branches = ((e.schema as Record<string, unknown>[]) ?? []).map((s) => ('const' in s ? JSON.stringify(s['const']) : 'enum' in s ? (s['enum'] as unknown[]).map((v) => JSON.stringify(v)).join(' | ') : String(s['type'] ?? 'schema')));
        out.push({ path: p, message: `must be one of: ${branches.join(', ')}; got ${JSON.stringify(e.data)}` });
        break;
      }
      default:
        out.push({ path: p, message: `${e.message ?? e.keyword}${e.keyword === 'type' || e.keyword.startsWith('m') || e.keyword.startsWith('exclusive') ? `, got ${JSON.stringify(e.data)}` : ''}` });
    }
  }
  return out;
}

const learnerValidators = new Map<string, ValidateFunction>();

/**
 * Validate (and fill defaults into) a learner's options with its factory's configSchema. `options` is
 * the `learner` block without `id`. Returns issues with paths under `/learner`.
 */
export function validateLearnerOptions(id: string, options: Record<string, unknown>): PipelineIssue[] {
  let v = learnerValidators.get(id);
  if (!v) {
    v = newAjv().compile(getLearner(id).configSchema);
    learnerValidators.set(id, v);
  }
  return v(options) ? [] : ajvIssues(v.errors, '/learner');
}

/** Import the plugin modules named by a pipeline (package names, or paths relative to the file). */
export async function loadPlugins(plugins: string[], baseDir: string): Promise<void> {
  for (const p of plugins) {
    const spec = p.startsWith('.') || p.startsWith('/') ? pathToFileURL(path.resolve(baseDir, p)).href : p;
    try {
      await import(spec);
    } catch (e) {
      throw new PipelineValidationError(path.join(baseDir, '(pipeline)'), [{ path: '/plugins', message: `cannot load plugin '${p}': ${(e as Error).message}` }]);
    }
  }
}

export interface ValidateContext {
  /** dataset ids that exist (checked when given) */
  datasets?: string[];
  /** JSON Schema of a dataset type's `{type, ...options}` (options are checked when given) */
  datasetSchema?: (id: string) => Record<string, unknown> | undefined;
}

const datasetValidators = new Map<string, ValidateFunction>();

function validateDatasetOptions(ctx: ValidateContext, id: string, options: Record<string, unknown>, ptr: string): PipelineIssue[] {
  const schema = ctx.datasetSchema?.(id);
  if (!schema) return [];
  let v = datasetValidators.get(id);
  if (!v) {
    v = newAjv().compile(schema);
    datasetValidators.set(id, v);
  }
  const obj = { ...options, type: id };
  if (v(obj)) {
    const { type: _t, ...filled } = obj;
    Object.assign(options, filled);
    return [];
  }
  return ajvIssues(v.errors, ptr).map((i) => (i.path === `${ptr}/type` ? { ...i, path: ptr } : i));
}

/**
 * Read, parse and validate a pipeline file (YAML or JSON). Defaults are filled in. Throws
 * {@link PipelineValidationError} listing every problem with its JSON path and line.
 */
export async function loadPipeline(file: string, ctx: ValidateContext = {}): Promise<PipelineConfig> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new PipelineValidationError(file, [{ path: '', message: `cannot read file (${(e as NodeJS.ErrnoException).code ?? String(e)})` }]);
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new PipelineValidationError(
      file,
      doc.errors.map((e) => ({ path: '', line: e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line, message: `syntax error: ${e.message.split('\n')[0]}` })),
    );
  }
  const raw = doc.toJS() as unknown;
  const v = getPipelineValidator();
  const issues: PipelineIssue[] = [];
  if (!v(raw)) issues.push(...ajvIssues(v.errors));
  const cfg = raw as PipelineConfig;
  if (issues.length === 0) {
    await loadPlugins(cfg.plugins, path.dirname(path.resolve(file)));
    const ids = listLearners().map((l) => l.id);
    if (!ids.includes(cfg.learner.id)) {
      issues.push({ path: '/learner/id', message: `unknown learner '${cfg.learner.id}'`, allowed: ids });
    } else {
      const { id: _id, ...options } = cfg.learner;
      issues.push(...validateLearnerOptions(cfg.learner.id, options));
      Object.assign(cfg.learner, options);
    }
    if (ctx.datasets) {
      if (!ctx.datasets.includes(cfg.data.dataset)) issues.push({ path: '/data/dataset', message: `unknown dataset '${cfg.data.dataset}'`, allowed: ctx.datasets });
      else issues.push(...validateDatasetOptions(ctx, cfg.data.dataset, cfg.data.options, '/data/options'));
      const ed = cfg.evaluate.dataset;
      if (ed && !ctx.datasets.includes(ed.dataset)) issues.push({ path: '/evaluate/dataset/dataset', message: `unknown dataset '${ed.dataset}'`, allowed: ctx.datasets });
      else if (ed) issues.push(...validateDatasetOptions(ctx, ed.dataset, ed.options, '/evaluate/dataset/options'));
    }
  }
  if (issues.length > 0) {
    for (const i of issues) i.line ??= lineOf(doc, lc, i.path);
    throw new PipelineValidationError(file, issues);
  }
  return cfg;
}
