import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { Cron } from "croner";
import { z } from "zod";

/** The card renderers Easel ships (src/render); `CARD_RENDERER` chooses one. */
export const CARD_ENGINES = ["satori", "takumi"] as const;

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
const int = (min = 0) => z.coerce.number().int().min(min);
const list = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === "" ? undefined : v));

/**
 * Every environment variable Easel reads, with its default. README.md lists the same names
 * (a test keeps them in step).
 */
export const EnvSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  PORT: int(0).max(65535).default(3000),
  HOST: z.string().default("0.0.0.0"),
  DATA_DIR: z.string().default("./data"),
  DATABASE_PATH: optionalString,
  /**
   * PostgreSQL instead of SQLite (`postgres://user:pass@host:5432/db`): cluster mode, several instances on one
   * database. This version migrates it (`easel migrate`) and fills it (`easel migrate-data`); serving on it
   * comes with the queue on PostgreSQL.
   */
  DATABASE_URL: optionalString.refine(
    (v) => v === undefined || /^postgres(ql)?:\/\//i.test(v),
    "must be a postgres:// or postgresql:// URL",
  ),
  PUBLIC_URL: z.url().optional(),
  ADMIN_KEY: z.string().min(16, "must be at least 16 characters").optional(),
  JWT_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  CLIENT_TOKEN_TTL_S: int(10).default(3600),
  /** How long a dashboard sign-in lasts. */
  DASHBOARD_SESSION_TTL_S: int(60).default(43_200),
  WORKER_CONCURRENCY: int(1).max(10_000).default(8),
  POLL_INTERVAL_MS: int(10).default(250),
  JOB_TIMEOUT_MS: int(100).default(300_000),
  JOB_MAX_ATTEMPTS: int(1).max(100).default(3),
  /** Queued generations one owner may have before new ones get 429 (0: no limit); system work is exempt. */
  MAX_QUEUED_PER_OWNER: int(0).default(100),
  /** Queued jobs of all kinds past which new generations get 503 (0: no limit). */
  MAX_QUEUE_DEPTH: int(0).default(10_000),
  STALLED_AFTER_MS: int(1000).default(480_000),
  STALLED_MAX: int(0).default(2),
  SHUTDOWN_GRACE_MS: int(0).default(20_000),
  RETAIN_COMPLETED_HOURS: z.coerce.number().min(0).default(24),
  RETAIN_FAILED_HOURS: z.coerce.number().min(0).default(168),
  RETENTION_CRON: z.string().refine(isCron, "must be a cron pattern (5-7 fields)").default("*/10 * * * *"),
  SQLITE_SYNCHRONOUS: z.enum(["NORMAL", "FULL"]).default("NORMAL"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** Bearer token GET /metrics requires; unset means the endpoint is open (keep it off the public internet). */
  METRICS_TOKEN: optionalString,
  /** When set, a database snapshot is uploaded to storage under `backups/` on this schedule. */
  BACKUP_CRON: z.string().refine(isCron, "must be a cron pattern (5-7 fields)").optional(),
  BACKUP_KEEP: int(1).default(7),
  CORS_ORIGINS: list.default([]),
  MAX_BODY_BYTES: int(1024).default(25 * 1024 * 1024),
  /** Deepest nesting of arrays/objects a JSON body may have; deeper bodies get 400 before they are parsed. */
  MAX_JSON_DEPTH: int(1).max(1000).default(64),
  ALLOW_PRIVATE_URLS: bool.default(false),
  STORAGE: z.enum(["local", "s3"]).default("local"),
  /**
   * With DATABASE_URL and STORAGE=local: the files directory is shared by every instance (one machine, or a
   * network volume), so local storage is safe in a cluster.
   */
  STORAGE_SHARED: bool.default(false),
  S3_ENDPOINT: optionalString,
  S3_BUCKET: optionalString,
  S3_REGION: z.string().default("auto"),
  S3_ACCESS_KEY_ID: optionalString,
  S3_SECRET_ACCESS_KEY: optionalString,
  S3_PUBLIC_URL: optionalString,
  S3_PATH_STYLE: bool.default(false),
  STORAGE_ORPHAN_GRACE_HOURS: z.coerce.number().min(0).default(24),
  RENDER_WORKERS: int(0).default(0),
  CARD_DEBOUNCE_MS: int(0).default(2000),
  CARD_CACHE_MAX_AGE: int(0).default(300),
  CARD_SUPERSEDED_GRACE_MS: int(0).default(0),
  CARD_RENDERER: z.enum(CARD_ENGINES).default("satori"),
  DEFAULT_PROVIDER: optionalString,
  OPENAI_API_KEY: optionalString,
  OPENAI_BASE_URL: optionalString,
  HF_TOKEN: optionalString,
  HF_BASE_URL: optionalString,
  GEMINI_API_KEY: optionalString,
  GEMINI_BASE_URL: optionalString,
  REPLICATE_API_TOKEN: optionalString,
  REPLICATE_BASE_URL: optionalString,
  FAL_KEY: optionalString,
  FAL_QUEUE_URL: optionalString,
  COMFYUI_URL: optionalString,
  COMFYUI_WORKFLOW: optionalString,
  /** Path of an API-format edit workflow (LoadImage with `{{image}}`); default: the built-in img2img graph. */
  COMFYUI_EDIT_WORKFLOW: optionalString,
  A1111_URL: optionalString,
  A1111_AUTH: optionalString,
  DASHSCOPE_API_KEY: optionalString,
  DASHSCOPE_BASE_URL: optionalString,
  BFL_API_KEY: optionalString,
  /** Black Forest Labs API base (regional: https://api.eu.bfl.ai, https://api.us.bfl.ai; tests: a fake). */
  BFL_BASE_URL: optionalString,
  PLACEHOLDER_LATENCY_MS: int(0).default(0),
  /** JSON: per-provider overrides of concurrency and requests per minute, e.g. {"openai":{"rpm":50}}. */
  PROVIDER_LIMITS: z
    .string()
    .transform((v, ctx) => {
      try {
        return z
          .record(
            z.string(),
            z.object({
              concurrency: z.number().int().min(1).optional(),
              rpm: z.number().int().min(0).optional(),
            }),
          )
          .parse(JSON.parse(v));
      } catch {
        ctx.addIssue({ code: "custom", message: 'must be JSON like {"openai":{"concurrency":2,"rpm":50}}' });
        return z.NEVER;
      }
    })
    .optional(),
  ITEM_TIMEOUT_MS: int(100).default(60_000),
  ITEM_MAX_ATTEMPTS: int(1).max(20).default(3),
  BATCH_CONCURRENCY: int(1).max(64).default(4),
  MAX_INPUT_IMAGE_BYTES: int(1024).default(20 * 1024 * 1024),
  WS_PING_INTERVAL_MS: int(100).default(30_000),
  WS_PING_TIMEOUT_MS: int(100).default(10_000),
  /** A WebSocket client whose unsent backlog passes this is disconnected (it can reconnect and resubscribe). */
  WS_MAX_BUFFERED_BYTES: int(4096).default(1024 * 1024),
  SSE_HEARTBEAT_MS: int(100).default(15_000),
  WEBHOOK_TIMEOUT_MS: int(100).default(10_000),
  /** Delays before each retry of a failed delivery (Standard Webhooks' schedule); jittered ±10%. */
  WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .transform((v, ctx) => {
      const ms = v.split(",").map((part) => durationMs(part.trim()));
      if (ms.length === 0 || ms.some((d) => d === null)) {
        ctx.addIssue({ code: "custom", message: 'must be durations like "5s,5m,30m,2h"' });
        return z.NEVER;
      }
      return ms as number[];
    })
    .prefault("5s,5m,30m,2h,5h,10h,10h"),
  /** Multiplies every retry delay (tests use a small factor). */
  WEBHOOK_RETRY_SCALE: z.coerce.number().positive().default(1),
  WEBHOOK_CONCURRENCY: int(1).default(4),
  WEBHOOK_FAILING_AFTER_MS: int(0).default(86_400_000),
  WEBHOOK_PROGRESS_INTERVAL_MS: int(0).default(1000),
  CREDITS_ENABLED: bool.default(true),
  CREDITS_PER_IMAGE: int(0).default(1),
  /** JSON: credits per image by provider for free prompts, e.g. {"openai":5}; others cost CREDITS_PER_IMAGE. */
  PROVIDER_CREDIT_COSTS: z
    .string()
    .transform((v, ctx) => {
      try {
        return z.record(z.string(), z.number().int().min(0)).parse(JSON.parse(v));
      } catch {
        ctx.addIssue({ code: "custom", message: 'must be JSON like {"openai":5,"placeholder":0}' });
        return z.NEVER;
      }
    })
    .optional(),
  BACKLOG_MIN: int(0).default(3),
  BACKLOG_MAX_CONCURRENT: int(0).default(3),
  BACKLOG_CRON: z.string().refine(isCron, "must be a cron pattern (5-7 fields)").default("* * * * *"),
  BACKLOG_FAILURE_LIMIT: int(1).default(3),
  BACKLOG_FAILURE_COOLDOWN_MS: int(0).default(900_000),
  BACKLOG_TOPUP_DELAY_MS: int(0).default(1000),
  INSTANT_RATE_PER_MIN: int(0).default(30),
  /** How long a request repeating an in-flight Idempotency-Key waits for the first one's answer (then 409). */
  IDEMPOTENCY_WAIT_MS: int(0).default(10_000),
  /** A reserved Idempotency-Key whose request never answered is taken over after this (its process died). */
  IDEMPOTENCY_LEASE_MS: int(1000).default(300_000),
});

export type Env = z.infer<typeof EnvSchema>;

export type Config = Env & {
  dataDir: string;
  databasePath: string;
  filesDir: string;
  publicUrl: string;
  renderWorkers: number;
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Why `easel serve` must not start with these settings in cluster mode (DATABASE_URL: several instances on one
 * database), as one line saying what to set; null when nothing stands in the way. Every instance serves every
 * image and card, so they must all see the same files.
 */
export function clusterRefusal(
  config: Pick<Config, "DATABASE_URL" | "STORAGE" | "STORAGE_SHARED" | "JWT_SECRET">,
): string | null {
  if (!config.DATABASE_URL) return null;
  if (config.STORAGE === "local" && !config.STORAGE_SHARED) {
    return (
      "STORAGE=local with DATABASE_URL: instances sharing a database must share their files too; " +
      "set STORAGE=s3 (with S3_BUCKET), or STORAGE_SHARED=true if DATA_DIR/files is one directory every instance uses"
    );
  }
  if (!config.JWT_SECRET) {
    return (
      "JWT_SECRET is unset with DATABASE_URL: a client token or dashboard session signed by one instance must " +
      "verify on every other, so set JWT_SECRET (32+ characters) to the same value on every instance"
    );
  }
  return null;
}

/** "250ms", "5s", "30m", "2h" → milliseconds; null when malformed. */
function durationMs(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  if (!m) return null;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

function isCron(pattern: string): boolean {
  try {
    new Cron(pattern, { paused: true });
    return true;
  } catch {
    return false;
  }
}

/** Secrets are named in errors but never echoed (error output ends up in logs). */
const SECRET_NAME = /KEY|SECRET|TOKEN|PASSWORD|AUTH|^DATABASE_URL$/;

/** Parses the environment once; throws a ConfigError naming every bad variable and what it expects. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // A blank value (`PORT=` or `PORT=" "`) means unset, not zero.
  const cleaned = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ""),
  );
  const parsed = EnvSchema.safeParse(cleaned);
  const lines = (parsed.error?.issues ?? []).map((i) => {
    const name = String(i.path[0] ?? "environment");
    const shown = SECRET_NAME.test(name) ? "(hidden)" : JSON.stringify(env[name] ?? "");
    return `  ${name}=${shown}: ${i.message}`;
  });
  if (cleaned.STORAGE === "s3" && !cleaned.S3_BUCKET) lines.push("  S3_BUCKET: required when STORAGE=s3");
  if (!parsed.success || lines.length > 0)
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  const e = parsed.data;
  const dataDir = resolve(e.DATA_DIR);
  return {
    ...e,
    dataDir,
    databasePath: e.DATABASE_PATH ? resolve(e.DATABASE_PATH) : join(dataDir, "easel.db"),
    filesDir: join(dataDir, "files"),
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/$/, ""),
    renderWorkers: e.RENDER_WORKERS || Math.max(1, availableParallelism()),
  };
}
