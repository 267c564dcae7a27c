// What every Ferry API's schemas share: the problem body an error answers
// with, and string patterns stated in words (a validation error names the
// rule, never the regex: problem.ts).
import { Type } from "typebox";
import type { Static } from "typebox";

/**
 * Every pattern the APIs' schemas use, in words: a validation error states
 * the rule (problem.ts), never the regex.
 */
export const PATTERN_RULES = new Map<string, string>();

/** A string schema's pattern and its rule (registered for messages; the rule is also its OpenAPI description). */
export function ruled(pattern: string, rule: string): { pattern: string; description: string } {
  PATTERN_RULES.set(pattern, rule);
  return { pattern, description: rule };
}

export const Problem = Type.Object({
  code: Type.String({ description: "stable error code (FERRY_ERR_…)" }),
  message: Type.String(),
  retryable: Type.Boolean(),
  details: Type.Object({}, { additionalProperties: true }),
});
export type ProblemBody = Static<typeof Problem>;
