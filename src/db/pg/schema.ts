/**
 * The PostgreSQL schema: every table of ../schema.ts with the same table, column, key and index names, so
 * one set of statements and one row mapping (db/rows.ts, driven by each column's own decoder) serves both
 * backends. test/db/pg-parity.test.ts compares the migrated databases; change both files together and
 * generate both migrations (`bun run db:generate`, `bun run db:generate:pg`).
 *
 * Type mapping, SQLite -> PostgreSQL:
 * - `integer` -> `bigint` (mode "number"): SQLite integers are 64-bit, and epoch-ms times overflow `integer`;
 *   one rule for every count and time means copied data can never overflow. The driver returns int8 as a
 *   string; drizzle's decoder turns it into a number, exact up to 2^53 (epoch ms until the year 287,396).
 * - `integer` with mode "boolean" -> `boolean`.
 * - `text` with mode "json" -> `jsonb` (`json` below): validated and queryable; the driver parses it, so a
 *   row's JSON needs no decoding step.
 * - `text`, including the enum-typed status columns -> `text` (no PostgreSQL enum: adding a status would
 *   need its own `ALTER TYPE` migration, and SQLite does not check them either).
 * Partial and expression indexes are kept as they are: PostgreSQL has both.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  customType,
  index,
  pgTable,
  primaryKey,
  text,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import {
  CLAIM_ORDER,
  DELIVERY_STATUSES,
  ITEM_STATUSES,
  JOB_STATUSES,
  type JobError,
  LEDGER_REASONS,
  type RecipeVariable,
  ROLES,
  TERMINAL_STATUSES,
} from "../schema";

/** An epoch-ms time, a count or an amount (SQLite `integer`). */
const int = (name: string) => bigint(name, { mode: "number" });

/**
 * A `jsonb` column whose driver value is the JavaScript value itself: Bun's SQL client encodes a value bound
 * to a jsonb parameter as JSON and parses jsonb when it reads. drizzle's own `jsonb` stringifies first, which
 * Bun then stores as a JSON *string* ('"{\"a\":1}"'), so statements bind objects, never JSON text.
 */
const json = customType<{ data: unknown; driverData: unknown }>({
  dataType: () => "jsonb",
  toDriver: (value) => value,
  fromDriver: (value) => value,
});

export const users = pgTable(
  "users",
  {
    id: text("id").primaryKey(),
    externalId: text("external_id"),
    name: text("name").notNull(),
    role: text("role", { enum: ROLES }).notNull(),
    parentId: text("parent_id"),
    credits: int("credits").notNull().default(0),
    unlimited: boolean("unlimited").notNull().default(false),
    createdAt: int("created_at").notNull(),
    updatedAt: int("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("users_external_idx").on(t.parentId, t.externalId),
    uniqueIndex("users_top_external_idx").on(t.externalId).where(sql`parent_id IS NULL`),
    index("users_parent_idx").on(t.parentId),
  ],
);

export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    prefix: text("prefix").notNull(),
    hash: text("hash").notNull().unique(),
    createdAt: int("created_at").notNull(),
    lastUsedAt: int("last_used_at"),
    revokedAt: int("revoked_at"),
    expiresAt: int("expires_at"),
  },
  (t) => [index("api_keys_user_idx").on(t.userId)],
);

export const dashboardSessions = pgTable(
  "dashboard_sessions",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    keyId: text("key_id")
      .notNull()
      .references(() => apiKeys.id, { onDelete: "cascade" }),
    createdAt: int("created_at").notNull(),
    expiresAt: int("expires_at").notNull(),
    revokedAt: int("revoked_at"),
  },
  (t) => [index("dashboard_sessions_expires_idx").on(t.expiresAt)],
);

export const jobs = pgTable(
  "jobs",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    status: text("status", { enum: JOB_STATUSES }).notNull(),
    priority: int("priority").notNull().default(0),
    input: json("input").notNull(),
    result: json("result"),
    error: json("error").$type<JobError>(),
    progress: int("progress").notNull().default(0),
    progressMessage: text("progress_message"),
    attempts: int("attempts").notNull().default(0),
    maxAttempts: int("max_attempts").notNull(),
    runAt: int("run_at").notNull(),
    lockedBy: text("locked_by"),
    lockedUntil: int("locked_until"),
    stalledCount: int("stalled_count").notNull().default(0),
    timeoutMs: int("timeout_ms"),
    dedupeKey: text("dedupe_key"),
    ownerId: text("owner_id"),
    recipeId: text("recipe_id"),
    creditsCharged: int("credits_charged").notNull().default(0),
    creditsRefunded: int("credits_refunded").notNull().default(0),
    webhookUrl: text("webhook_url"),
    metadata: json("metadata").$type<Record<string, unknown>>(),
    createdAt: int("created_at").notNull(),
    startedAt: int("started_at"),
    finishedAt: int("finished_at"),
    updatedAt: int("updated_at").notNull(),
  },
  // The same indexes as SQLite's, for the same reasons (see ../schema.ts); the claim order is one expression
  // so a PostgreSQL claim can walk the index in order too.
  (t) => [
    index("jobs_claim_idx")
      .on(sql.raw(`(${CLAIM_ORDER})`), t.runAt, t.id, t.type, t.ownerId)
      .where(sql`status = 'queued'`),
    index("jobs_owner_queued_idx")
      .on(t.ownerId, t.type)
      .where(sql`status = 'queued' AND owner_id IS NOT NULL`),
    uniqueIndex("jobs_dedupe_queued_idx")
      .on(t.dedupeKey)
      .where(sql`status = 'queued' AND dedupe_key IS NOT NULL`),
    index("jobs_active_lease_idx").on(t.lockedUntil, t.type, t.ownerId).where(sql`status = 'active'`),
    index("jobs_owner_idx").on(t.ownerId, t.id).where(sql`owner_id IS NOT NULL`),
    index("jobs_ended_idx").on(t.status, t.type, t.finishedAt, t.id).where(sql`finished_at IS NOT NULL`),
    index("jobs_recipe_idx")
      .on(t.recipeId, t.ownerId, t.status, t.finishedAt, t.id)
      .where(sql`recipe_id IS NOT NULL`),
  ],
);

/** Counts of ended jobs, as in ../schema.ts; migration job_count_triggers keeps them on deletes. */
export const jobCounts = pgTable(
  "job_counts",
  {
    scope: text("scope").notNull(),
    type: text("type").notNull(),
    status: text("status", { enum: TERMINAL_STATUSES }).notNull(),
    n: int("n").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.scope, t.type, t.status] })],
);

/** As in ../schema.ts: PostgreSQL hides an uncommitted row from other transactions as SQLite does. */
export const jobCountsDeferred = pgTable("job_counts_deferred", {
  id: int("id").primaryKey(),
});

export const jobThroughput = pgTable(
  "job_throughput",
  {
    scope: text("scope").notNull(),
    minute: int("minute").notNull(),
    type: text("type").notNull(),
    status: text("status", { enum: TERMINAL_STATUSES }).notNull(),
    n: int("n").notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.scope, t.minute, t.type, t.status] }),
    index("job_throughput_minute_idx").on(t.minute),
  ],
);

export const jobItems = pgTable(
  "job_items",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    idx: int("idx").notNull(),
    key: text("key").notNull(),
    input: json("input").notNull(),
    status: text("status", { enum: ITEM_STATUSES }).notNull().default("pending"),
    result: json("result"),
    assetId: text("asset_id"),
    error: json("error").$type<JobError>(),
    attempts: int("attempts").notNull().default(0),
    updatedAt: int("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.idx] })],
);

export const jobAttempts = pgTable(
  "job_attempts",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    attempt: int("attempt").notNull(),
    outcome: text("outcome", { enum: ["retried", "stalled", "rerun"] }).notNull(),
    startedAt: int("started_at"),
    endedAt: int("ended_at").notNull(),
    error: json("error").$type<JobError>(),
    retryAt: int("retry_at"),
  },
  (t) => [index("job_attempts_job_idx").on(t.jobId, t.endedAt)],
);

/** Storage objects a job's input names (SQLite's `job_input_keys`). */
export const jobInputKeys = pgTable(
  "job_input_keys",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    key: text("key").notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.key] }), index("job_input_keys_key_idx").on(t.key)],
);

export const assets = pgTable(
  "assets",
  {
    id: text("id").primaryKey(),
    jobId: text("job_id").references(() => jobs.id, { onDelete: "set null" }),
    itemIdx: int("item_idx"),
    ownerId: text("owner_id"),
    storageKey: text("storage_key").notNull().unique(),
    contentType: text("content_type").notNull(),
    bytes: int("bytes").notNull(),
    width: int("width"),
    height: int("height"),
    thumbnailKey: text("thumbnail_key"),
    createdAt: int("created_at").notNull(),
    deletedAt: int("deleted_at"),
  },
  (t) => [
    index("assets_job_idx").on(t.jobId),
    // No index on owner_id (as in src/db/schema.ts): nothing reads assets by owner.
    index("assets_thumbnail_key_idx").on(t.thumbnailKey).where(sql`thumbnail_key IS NOT NULL`),
  ],
);

export const cards = pgTable(
  "cards",
  {
    id: text("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    template: text("template").notNull(),
    data: json("data").notNull(),
    version: int("version").notNull().default(1),
    renderedVersion: int("rendered_version").notNull().default(0),
    imageKey: text("image_key"),
    imageUrl: text("image_url"),
    renderError: json("render_error").$type<JobError>(),
    renderDueAt: int("render_due_at"),
    createdAt: int("created_at").notNull(),
    updatedAt: int("updated_at").notNull(),
  },
  (t) => [index("cards_owner_idx").on(t.ownerId, t.id)],
);

export const recipes = pgTable("recipes", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  description: text("description"),
  provider: text("provider").notNull(),
  model: text("model"),
  promptTemplate: text("prompt_template").notNull(),
  negativePrompt: text("negative_prompt"),
  variables: json("variables").$type<RecipeVariable[]>().notNull(),
  output: json("output").$type<string | Record<string, unknown>>(),
  size: text("size"),
  creditCost: int("credit_cost").notNull().default(1),
  backlogMin: int("backlog_min").notNull().default(3),
  active: boolean("active").notNull().default(true),
  createdAt: int("created_at").notNull(),
  updatedAt: int("updated_at").notNull(),
});

export const recipeUsage = pgTable(
  "recipe_usage",
  {
    recipeId: text("recipe_id")
      .notNull()
      .references(() => recipes.id, { onDelete: "cascade" }),
    variable: text("variable").notNull(),
    value: text("value").notNull(),
    count: int("count").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.recipeId, t.variable, t.value] })],
);

export const backlogState = pgTable("backlog_state", {
  recipeId: text("recipe_id")
    .primaryKey()
    .references(() => recipes.id, { onDelete: "cascade" }),
  consecutiveFailures: int("consecutive_failures").notNull().default(0),
  lastFailureAt: int("last_failure_at"),
  lastError: json("last_error").$type<JobError>(),
  lastSuccessAt: int("last_success_at"),
  updatedAt: int("updated_at").notNull(),
});

export const creditLedger = pgTable(
  "credit_ledger",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    delta: int("delta").notNull(),
    balanceAfter: int("balance_after").notNull(),
    reason: text("reason", { enum: LEDGER_REASONS }).notNull(),
    jobId: text("job_id"),
    note: text("note"),
    createdAt: int("created_at").notNull(),
  },
  (t) => [index("credit_ledger_user_idx").on(t.userId, t.id), index("credit_ledger_job_idx").on(t.jobId)],
);

export const webhookEndpoints = pgTable(
  "webhook_endpoints",
  {
    id: text("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    url: text("url").notNull(),
    secret: text("secret").notNull(),
    events: json("events").$type<string[]>().notNull(),
    active: boolean("active").notNull().default(true),
    failureCount: int("failure_count").notNull().default(0),
    failingSince: int("failing_since"),
    disabledReason: text("disabled_reason"),
    createdAt: int("created_at").notNull(),
    updatedAt: int("updated_at").notNull(),
  },
  (t) => [index("webhook_endpoints_owner_idx").on(t.ownerId)],
);

export const webhookSecrets = pgTable("webhook_secrets", {
  ownerId: text("owner_id").primaryKey(),
  secret: text("secret").notNull(),
  previousSecret: text("previous_secret"),
  rotatedAt: int("rotated_at"),
  createdAt: int("created_at").notNull(),
});

export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    id: text("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    endpointId: text("endpoint_id").references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    jobId: text("job_id"),
    url: text("url").notNull(),
    eventType: text("event_type").notNull(),
    /** The exact body sent on every attempt: text, not jsonb, which would reorder its keys. */
    payload: text("payload").notNull(),
    status: text("status", { enum: DELIVERY_STATUSES }).notNull().default("pending"),
    attempts: int("attempts").notNull().default(0),
    nextAttemptAt: int("next_attempt_at"),
    lastAttemptAt: int("last_attempt_at"),
    lastStatusCode: int("last_status_code"),
    lastError: text("last_error"),
    lastDurationMs: int("last_duration_ms"),
    createdAt: int("created_at").notNull(),
    deliveredAt: int("delivered_at"),
    updatedAt: int("updated_at").notNull(),
  },
  (t) => [
    index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.id),
    index("webhook_deliveries_owner_idx").on(t.ownerId, t.id),
    index("webhook_deliveries_job_idx").on(t.jobId),
    index("webhook_deliveries_created_idx").on(t.createdAt),
  ],
);

export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    key: text("key").notNull(),
    ownerId: text("owner_id").notNull(),
    requestHash: text("request_hash").notNull(),
    status: int("status").notNull(),
    /** The stored answer as it was sent: text, as in SQLite. */
    response: text("response").notNull(),
    createdAt: int("created_at").notNull(),
    lockedBy: text("locked_by"),
    lockedUntil: int("locked_until"),
  },
  (t) => [primaryKey({ columns: [t.ownerId, t.key] }), index("idempotency_keys_created_idx").on(t.createdAt)],
);

export const instances = pgTable(
  "instances",
  {
    id: text("id").primaryKey(),
    host: text("host").notNull(),
    version: text("version").notNull(),
    startedAt: int("started_at").notNull(),
    lastHeartbeatAt: int("last_heartbeat_at").notNull(),
    jobsRunning: int("jobs_running").notNull().default(0),
  },
  (t) => [index("instances_heartbeat_idx").on(t.lastHeartbeatAt)],
);
