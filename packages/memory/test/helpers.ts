import * as tf from '@tensorflow/tfjs-core';
import { Rng, initEngine, type Episode } from '@metalearn/core';

/** tiny tests run on the cpu backend (with the project's gradients registered by initEngine) */
export async function useCpu(): Promise<void> {
  await initEngine({ backend: 'cpu', quiet: true });
}

/**
 * Synthetic few-shot task: every class of an episode gets a fresh random prototype in R^D; examples
 * are the prototype plus Gaussian noise. Labels are only meaningful within the episode, so the model
 * must bind them from the sequence.
 */
export function syntheticEpisode(rng: Rng, ways: number, shots: number, queries: number, D: number, noise = 0.3, fixedProtos?: Float32Array[]): Episode {
  const protos = fixedProtos ?? Array.from({ length: ways }, () => rng.normalArray(D));
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
