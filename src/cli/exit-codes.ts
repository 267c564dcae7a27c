// The `ferry` command's exit codes, in one place (scripts depend on them).
export const EXIT = {
  /** Did what was asked. */
  ok: 0,
  /** Failed (an error is printed). */
  failed: 1,
  /** Bad command line: unknown command or flag, missing argument. */
  usage: 2,
  /** Refused before changing anything (e.g. no VF on the destination). */
  refused: 3,
  /** Started, failed, and was rolled back: the VM runs where it was. */
  rolledBack: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
