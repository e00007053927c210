import { describe, expect, it } from 'vitest';
import { Progress, formatDuration } from '../src/progress.js';

function sink(): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const stream = { isTTY: false, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => out };
}

describe('Progress', () => {
  it('formats durations', () => {
    expect(formatDuration(75)).toBe('1:15');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(NaN)).toBe('--:--');
  });

  it('ends the ETA with the time budget when the budget comes first', async () => {
    const withBudget = sink();
    const without = sink();
    const a = new Progress('train', withBudget.stream, { tty: false, budgetSeconds: 10 });
    const b = new Progress('train', without.stream, { tty: false });
    await new Promise((r) => setTimeout(r, 20));
    a.update({ done: 1, total: 1e9 }, true);
    b.update({ done: 1, total: 1e9 }, true);
    expect(withBudget.text()).toMatch(/ETA 0:(09|10)\b/);
    expect(without.text()).not.toMatch(/ETA 0:(09|10)\b/);
  });
});
