import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClassDataset } from './dataset.js';
import { EpisodeSampler, type EpisodeSpec } from './episodes.js';
import { SyntheticGlyphs } from './glyphs.js';
import { loadOmniglot } from './omniglot.js';

export interface BenchOptions {
  /** Omniglot root (default ../shared/data/omniglot from the repo, or $METALEARN_OMNIGLOT) */
  omniglotRoot?: string;
  /** seconds to spend on each sampling figure (default 3) */
  seconds?: number;
  /** tfjs backend for tensor creation (default: cpu) */
  backend?: 'cpu' | 'wasm';
  log?: (line: string) => void;
}

export interface BenchFigures {
  dataset: string;
  items: number;
  classes: number;
  /** seconds: decode every PNG + write the cache (empty cache folder) */
  coldLoadS: number | null;
  /** seconds: load again from the binary cache */
  warmLoadS: number | null;
  /** CPU seconds (user + system) of the cold / warm load: less sensitive to a busy machine */
  coldLoadCpuS: number | null;
  warmLoadCpuS: number | null;
  /** episodes per second including tensor creation (and disposal), wall clock */
  episodesPerS: Record<string, number>;
  /** episodes per CPU second */
  episodesPerCpuS: Record<string, number>;
  backend: string;
}

const cpuS = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

function measure(ds: ClassDataset, pool: string | undefined, spec: EpisodeSpec, seconds: number): { wall: number; cpu: number } {
  const sampler = new EpisodeSampler(ds, pool, spec, 1);
  // warm-up (also renders lazily built classes once)
  for (let i = 0; i < 20; i++) sampler.episode(1_000_000 + i).dispose!();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) {
    sampler.episode(n++).dispose!();
  }
  const cpu = cpuS(process.cpuUsage(c0));
  return { wall: n / ((performance.now() - t0) / 1000), cpu: n / cpu };
}

/** Print and return the data figures: cold load, warm load (cache), episodes/s for 5w1s and 20w5s. */
export async function benchData(opts: BenchOptions = {}): Promise<BenchFigures> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const tf = await import('@tensorflow/tfjs-core');
  const backend = opts.backend ?? 'cpu';
  if (backend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  else await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend(backend);
  await tf.ready();
  const seconds = opts.seconds ?? 3;
  const here = fileURLToPath(new URL('.', import.meta.url));
  const root = opts.omniglotRoot ?? process.env['METALEARN_OMNIGLOT'] ?? resolve(here, '../../../../shared/data/omniglot');
  let ds: ClassDataset;
  let cold: number | null = null;
  let warm: number | null = null;
  let coldCpu: number | null = null;
  let warmCpu: number | null = null;
  let items = 0;
  let pool: string | undefined;
  if (existsSync(join(root, 'images_background'))) {
    const dir = mkdtempSync(join(tmpdir(), 'metalearn-bench-'));
    try {
      let t = performance.now();
      let c = process.cpuUsage();
      const first = await loadOmniglot({ root, cache: dir });
      cold = (performance.now() - t) / 1000;
      coldCpu = cpuS(process.cpuUsage(c));
      t = performance.now();
      c = process.cpuUsage();
      const second = await loadOmniglot({ root, cache: dir });
      warm = (performance.now() - t) / 1000;
      warmCpu = cpuS(process.cpuUsage(c));
      if (!second.fromCache) throw new Error('bench: second load did not come from the cache');
      items = first.chars.reduce((a, c) => a + c.count, 0);
      ds = second;
      pool = 'train';
      log(`omniglot ${root}: ${items} PNGs, ${first.chars.length} characters, ${ds.numClasses} classes with rotations`);
      log(`cold load (decode + resize + write cache): ${cold.toFixed(2)} s (${coldCpu.toFixed(2)} s CPU)`);
      log(`warm load (binary cache):                  ${warm.toFixed(2)} s (${warmCpu.toFixed(2)} s CPU)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } else {
    log(`omniglot not found at ${root}; benchmarking sampling on synthetic glyphs`);
    ds = new SyntheticGlyphs({ numClasses: 600 });
    items = 600 * 20;
  }
  const episodesPerS: Record<string, number> = {};
  const episodesPerCpuS: Record<string, number> = {};
  for (const [label, spec] of [
    ['5w1s15q', { ways: 5, shots: 1, queries: 15 }],
    ['20w5s15q', { ways: 20, shots: 5, queries: 15 }],
  ] as const) {
    const eps = measure(ds, pool, spec, seconds);
    episodesPerS[label] = eps.wall;
    episodesPerCpuS[label] = eps.cpu;
    log(`episodes/s ${label} (sample + ${backend} tensors): ${eps.wall.toFixed(0)} (${eps.cpu.toFixed(0)} per CPU second)`);
  }
  return { dataset: ds.name, items, classes: ds.numClasses, coldLoadS: cold, warmLoadS: warm, coldLoadCpuS: coldCpu, warmLoadCpuS: warmCpu, episodesPerS, episodesPerCpuS, backend };
}

const invoked = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  const arg = process.argv[2];
  benchData(arg ? { omniglotRoot: arg } : {}).catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
