import pino, { type Logger } from "pino";

export type { Logger };

/**
 * JSON logs in production; readable lines in development when a terminal is attached. Keys, tokens and
 * image bytes are redacted wherever they could appear.
 */
export function createLogger(opts: { level: string; pretty?: boolean }): Logger {
  return pino({
    level: opts.level,
    base: undefined,
    redact: {
      paths: [
        "authorization",
        "headers.authorization",
        "req.headers.authorization",
        "token",
        "key",
        "apiKey",
        "secret",
        "*.token",
        "*.key",
        "*.secret",
        "*.b64_json",
        "*.image",
        "*.mask",
      ],
      censor: "[redacted]",
    },
    ...(opts.pretty
      ? { transport: { target: "pino-pretty", options: { colorize: true, translateTime: "HH:MM:ss.l" } } }
      : {}),
  });
}

export const silentLogger: Logger = pino({ level: "silent" });
