import { it } from 'vitest';
import { Rng, initEngine } from '@metalearn/core';
import { mannFactory, lstmMetaFactory } from '@metalearn/memory';
import { syntheticEpisode } from './helpers.js';
it('bench', async () => {
  console.log(JSON.stringify(await initEngine({ backend: 'wasm', quiet: true })));
  for (const [f, cfg] of [[mannFactory, {}], [lstmMetaFactory, {}]] as const) {
    const l = f.create(cfg, { inputShape: [400], seed: 1 });
    const rng = new Rng(1);
    for (let i = 0; i < 3; i++) {
      const eps = Array.from({ length: 16 }, () => syntheticEpisode(rng, 5, 1, 9, 400));
      const t0 = Date.now();
      const r = l.metaTrainStep(eps);
      console.log('BENCH', f.id, i, Date.now() - t0, 'ms', r.loss);
      for (const e of eps) e.dispose?.();
    }
    l.dispose();
  }
}, 600000);
