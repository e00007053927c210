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
