import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng, type Episode } from '@metalearn/core';

export async function useCpu(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
}

/**
 * Synthetic few-shot task: every class of an episode gets a fresh random prototype in R^D; examples
 * are the prototype plus Gaussian noise. Labels are only meaningful within the episode, so the model
 * must bind them from the sequence.
 */
export function syntheticEpisode(rng: Rng, ways: number, shots: number, queries: number, D: number, noise = 0.3): Episode {
  const protos = Array.from({ length: ways }, () => rng.normalArray(D));
  const make = (per: number) => {
    const x = new Float32Array(ways * per * D);
    const y = new Int32Array(ways * per);
    for (let c = 0; c < ways; c++)
      for (let i = 0; i < per; i++) {
        const r = c * per + i;
        y[r] = c;
        for (let d = 0; d < D; d++) x[r * D + d] = protos[c]![d]! + noise * rng.normal();
      }
    return { x: tf.tensor2d(x, [ways * per, D]), y };
  };
  const support = make(shots);
  const query = make(queries);
  return { ways, shots, support, query, dispose: () => (support.x.dispose(), query.x.dispose()) };
}

// TODO(engine): switch to core's initEngine() once it is exported from @metalearn/core
import { registerProjectGradients } from '../../core/src/engine/gradients.js';
registerProjectGradients();
