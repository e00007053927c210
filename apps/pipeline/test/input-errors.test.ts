import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadPipeline, PipelineValidationError, formatIssue } from '../src/validate.js';

describe('pipeline YAML syntax errors', () => {
  it('name the file and the line', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-yaml-'));
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'name: x\n\ndescription: paper: 98.8%\n');
    const err = await loadPipeline(file).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PipelineValidationError);
    const issues = (err as PipelineValidationError).issues;
    expect(issues[0]!.line).toBe(3);
    expect(formatIssue(file, issues[0]!)).toMatch(/^\s*bad\.yaml:3 .*syntax error/);
  });
});

describe('bad data behind a valid pipeline', () => {
  it('exits 2 with the data error naming the folder, and writes nothing', async () => {
    const { main } = await import('../src/main.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ml-data-'));
    const file = path.join(dir, 'p.yaml');
    fs.writeFileSync(
      file,
      'data:\n  dataset: omniglot\n  options: {root: ./no-such-omniglot}\nepisodes: {ways: 5, shots: 1, queries: 1}\nlearner: {id: protonet}\ntrain: {iterations: 1}\nevaluate: {episodes: 1}\n',
    );
    let err = '';
    const out = path.join(dir, 'out');
    const code = await main(['run', file, '--out', out], { stdout: () => {}, stderr: (s) => (err += s), progress: null, signals: false });
    expect(code).toBe(2);
    expect(err).toMatch(/no-such-omniglot/);
    expect(fs.existsSync(out)).toBe(false);
  });
});
