import pino, { type DestinationStream, type Logger } from "pino";
import type { PrettyOptions } from "pino-pretty";

export type { Logger };

/** Where secrets and image bytes could appear in a logged object; each is replaced by "[redacted]". */
const REDACT = [
  "authorization",
  "cookie",
  "headers.authorization",
  "headers.cookie",
  "req.headers.authorization",
  "req.headers.cookie",
  "token",
  "key",
  "apiKey",
  "secret",
  "password",
  "*.authorization",
  "*.token",
  "*.key",
  "*.apiKey",
  "*.secret",
  "*.password",
  "*.b64_json",
  "*.image",
  "*.images",
  "*.mask",
  "*.bytes",
  "*.png",
];

export type LoggerOptions = {
  level: string;
  /** Human-readable lines (pino-pretty) instead of JSON; for a developer's terminal. */
  pretty?: boolean;
  /** @defaultValue stdout */
  destination?: DestinationStream;
};

/**
 * JSON logs in production; readable lines in development when a terminal is attached. Keys, tokens and
 * image bytes are redacted wherever they could appear. pino-pretty runs as a stream in this thread (not a
 * transport worker), so it also works inside the compiled executable; it is required only when used, to
 * keep it off every CLI command's start-up.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const options = { level: opts.level, base: undefined, redact: { paths: REDACT, censor: "[redacted]" } };
  if (opts.pretty) {
    const pretty = require("pino-pretty") as (o: PrettyOptions) => DestinationStream;
    return pino(
      options,
      pretty({ colorize: true, translateTime: "HH:MM:ss.l", destination: opts.destination ?? 1, sync: true }),
    );
  }
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

export const silentLogger: Logger = pino({ level: "silent" });
