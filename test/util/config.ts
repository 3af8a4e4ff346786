/** Validating configs in tests: the config, or its errors (not a test file itself). */
import { validate } from '../../src/config/validate';
import type { ConfigIssue } from '../../src/errors';

/** The validated config; throws with every error if it was refused. */
export function ok(input: unknown) {
  const r = validate(input);
  if (!r.ok) throw new Error(`expected a valid config, got:\n${r.errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`);
  return r.config;
}

/** The errors of a config that must be refused; throws if it was accepted. */
export function errors(input: unknown): ConfigIssue[] {
  const r = validate(input);
  if (r.ok) throw new Error('expected errors, the config was accepted');
  return r.errors;
}
