import pino, { type Logger } from "pino";

export type { Logger };

/**
 * The one logger root: JSON lines on stdout. Anything that can carry a database
 * credential is redacted by key, wherever it sits in a log record.
 */
export function createLogger(options: { level?: string; name?: string; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      name: options.name ?? "schema-gate",
      level: options.level ?? "info",
      redact: {
        paths: [
          "password", "*.password", "*.*.password",
          "url", "*.url", "connectionString", "*.connectionString",
          "PGPASSWORD", "*.PGPASSWORD", "*.data", "token", "*.token",
        ],
        censor: "[redacted]",
      },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}
