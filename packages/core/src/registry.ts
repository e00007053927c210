import type { LearnerFactory } from './contracts.js';

const learners = new Map<string, LearnerFactory>();

/** Register a learner factory under its id. Re-registering the same id replaces it. */
export function registerLearner(f: LearnerFactory): void {
  learners.set(f.id, f);
}

export function getLearner(id: string): LearnerFactory {
  const f = learners.get(id);
  if (!f) {
    const known = [...learners.keys()].sort().join(', ') || '(none registered)';
    throw new Error(`unknown learner '${id}'; registered learners: ${known}`);
  }
  return f;
}

export function listLearners(): LearnerFactory[] {
  return [...learners.values()].sort((a, b) => a.id.localeCompare(b.id));
}
