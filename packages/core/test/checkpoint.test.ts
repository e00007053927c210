import { describe, expect, it, beforeAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng, saveCheckpoint, loadCheckpoint, tensorsToData, dataToTensors, type Checkpoint } from '../src/index.js';

describe('checkpoint', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('round-trips params, optimiser state and RNG state exactly', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-ck-'));
    const rng = new Rng(7);
    rng.next();
    const params = { 'a.weight': tf.tensor([[1.5, -2.25], [3, 4]]), 'a.step': tf.tensor([3], [1], 'int32') };
    const c: Checkpoint = {
      format: 'metalearn-checkpoint', version: 1, learner: 'test', config: { x: 1 },
      params: tensorsToData(params), optimizer: { t: 5 }, rng: rng.state(), progress: { iteration: 12 },
    };
    const file = path.join(dir, 'ck.json');
    saveCheckpoint(file, c);
    expect(fs.readdirSync(dir)).toEqual(['ck.json']); // no temp file left behind
    const back = loadCheckpoint(file);
    const t = dataToTensors(back.params);
    expect(Array.from(t['a.weight']!.dataSync())).toEqual([1.5, -2.25, 3, 4]);
    expect(t['a.step']!.dtype).toBe('int32');
    const r2 = Rng.fromState(back.rng!);
    expect(r2.next()).toBe(rng.next());
    expect(back.progress).toEqual({ iteration: 12 });
  });

  it('names the file and the problem for a corrupt checkpoint', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-ck-'));
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, '{"format":"metalearn-checkpoint","version":1,"learn');
    expect(() => loadCheckpoint(file)).toThrow(/bad\.json: not valid JSON/);
    fs.writeFileSync(file, JSON.stringify({ format: 'metalearn-checkpoint', version: 1, learner: 'x', config: {}, params: { w: { shape: [2, 2], dtype: 'float32', data: [1] } } }));
    expect(() => loadCheckpoint(file)).toThrow(/params\.w has 1 values for shape \[2,2\]/);
    expect(() => loadCheckpoint(path.join(dir, 'missing.json'))).toThrow(/missing\.json: cannot read \(ENOENT\)/);
  });
});
