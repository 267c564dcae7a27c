// Logging: pino, a child logger per migration/instance. Never log secrets.
import { pino } from "pino";
import type { Logger } from "pino";

export type { Logger };

export function createLogger(options: { name: string; level?: string; destination?: number | string }): Logger {
  const level = options.level ?? process.env["FERRY_LOG_LEVEL"] ?? "info";
  return pino(
    {
      name: options.name,
      level,
      redact: { paths: ["token", "*.token", "authorization", "*.authorization", "headers.authorization"], censor: "[redacted]" },
    },
    pino.destination(options.destination ?? 2),
  );
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = pino({ level: "silent" });
