// The one way Ferry runs a host command: execFile with an argv array, never
// a shell string, always with a deadline.
import { execFile } from "node:child_process";
import { FerryError } from "./errors.ts";

export interface RunOptions {
  signal?: AbortSignal;
  /** Default 30 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to stdin, then stdin is closed. */
  input?: string | Buffer;
  /** Resolve with a non-zero exit instead of throwing. */
  allowFailure?: boolean;
  maxBuffer?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type Runner = (file: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

export const run: Runner = (file, args, options = {}) =>
  new Promise<RunResult>((resolve, reject) => {
    const child = execFile(
      file,
      [...args],
      {
        signal: options.signal,
        timeout: options.timeoutMs ?? 30_000,
        env: options.env,
        cwd: options.cwd,
        maxBuffer: options.maxBuffer ?? 64 * 1024 * 1024,
        encoding: "utf8",
        killSignal: "SIGKILL",
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ code: 0, stdout, stderr });
          return;
        }
        const code = typeof error.code === "number" ? error.code : -1;
        if (options.allowFailure && code >= 0 && !error.killed) {
          resolve({ code, stdout, stderr });
          return;
        }
        const what = `${file} ${args.join(" ")}`;
        const why = error.killed ? "killed (deadline or abort)" : code >= 0 ? `exit ${code}` : String(error.code);
        reject(
          new FerryError("FERRY_ERR_COMMAND", `${what}: ${why}${stderr.trim() ? `: ${stderr.trim().slice(0, 500)}` : ""}`, {
            cause: error,
            details: { file, args: [...args], exitCode: code, stderr: stderr.slice(0, 2000) },
          }),
        );
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
