import { sql } from "drizzle-orm";
import type { RecipeVariable } from "./json-columns";

export type { RecipeVariable } from "./json-columns";

import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const ROLES = ["admin", "app", "user", "system"] as const;
export type Role = (typeof ROLES)[number];

export const JOB_STATUSES = ["queued", "active", "completed", "partial", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES = ["completed", "partial", "failed", "cancelled"] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
/** A job in one of these states has ended: it runs again only if retried. */
export const isTerminalStatus = (status: string): boolean =>
  (TERMINAL_STATUSES as readonly string[]).includes(status);

/** How many milliseconds of waiting one level of job priority is worth (see CLAIM_ORDER). */
export const PRIORITY_STEP_MS = 1000;

/**
 * The order jobs are claimed in, lowest first: a job's due time moved earlier by its priority. Sorting by it
 * is aging: a waiting job's effective priority rises one level per PRIORITY_STEP_MS, so a job due at `t` is
 * overtaken only by jobs of priority q > p that became due before t + (q - p) * PRIORITY_STEP_MS, and starts
 * within that bound (plus the work queued ahead of it) under any stream of higher-priority work. Aging, not
 * per-type slot shares: it bounds the wait of every job (of any type, owner or priority) with one static
 * sort key, so the claim stays a walk down one index; shares would need a claim per type and still let one
 * type's low-priority jobs starve behind its own high-priority ones. The claim statement and the index
 * must use this exact expression for SQLite to match them.
 */
export const CLAIM_ORDER = `run_at - priority * ${PRIORITY_STEP_MS}`;

/** `cancelled`: the job was cancelled before the item finished; a retry runs it again. */
export const ITEM_STATUSES = ["pending", "completed", "failed", "cancelled"] as const;
export type ItemStatus = (typeof ITEM_STATUSES)[number];

/** Stored shape of a failure: what went wrong and what the engine and billing may do about it. */
export type JobError = {
  code: string;
  message: string;
  retryable: boolean;
  refundable: boolean;
  details?: unknown;
};

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    /** The app's own id for this user, unique among the users its parent (the app) created. */
    externalId: text("external_id"),
    name: text("name").notNull(),
    role: text("role", { enum: ROLES }).notNull(),
    /** The app (or admin) user that created this end user; null for top-level users. */
    parentId: text("parent_id"),
    credits: integer("credits").notNull().default(0),
    unlimited: integer("unlimited", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("users_external_idx").on(t.parentId, t.externalId),
    // NULLs are distinct in unique indexes, so top-level users need their own.
    uniqueIndex("users_top_external_idx").on(t.externalId).where(sql`parent_id IS NULL`),
    index("users_parent_idx").on(t.parentId),
  ],
);

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    prefix: text("prefix").notNull(),
    hash: text("hash").notNull().unique(),
    createdAt: integer("created_at").notNull(),
    lastUsedAt: integer("last_used_at"),
    revokedAt: integer("revoked_at"),
    /** The key stops working at this time; null: never. */
    expiresAt: integer("expires_at"),
  },
  (t) => [index("api_keys_user_idx").on(t.userId)],
);

/**
 * Dashboard sign-ins. The session cookie is a signed JWT naming one of these rows by id; a session is valid
 * only while its row exists unrevoked, so a sign-out holds across restarts.
 */
export const dashboardSessions = sqliteTable(
  "dashboard_sessions",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    keyId: text("key_id")
      .notNull()
      .references(() => apiKeys.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    revokedAt: integer("revoked_at"),
  },
  (t) => [index("dashboard_sessions_expires_idx").on(t.expiresAt)],
);

export const jobs = sqliteTable(
  "jobs",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    status: text("status", { enum: JOB_STATUSES }).notNull(),
    priority: integer("priority").notNull().default(0),
    input: text("input", { mode: "json" }).notNull(),
    result: text("result", { mode: "json" }),
    error: text("error", { mode: "json" }).$type<JobError>(),
    progress: integer("progress").notNull().default(0),
    progressMessage: text("progress_message"),
    attempts: integer("attempts").notNull().default(0),
    maxAttempts: integer("max_attempts").notNull(),
    runAt: integer("run_at").notNull(),
    lockedBy: text("locked_by"),
    lockedUntil: integer("locked_until"),
    stalledCount: integer("stalled_count").notNull().default(0),
    timeoutMs: integer("timeout_ms"),
    dedupeKey: text("dedupe_key"),
    ownerId: text("owner_id"),
    recipeId: text("recipe_id"),
    creditsCharged: integer("credits_charged").notNull().default(0),
    creditsRefunded: integer("credits_refunded").notNull().default(0),
    webhookUrl: text("webhook_url"),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, unknown>>(),
    createdAt: integer("created_at").notNull(),
    /** When the latest attempt started (earlier attempts: job_attempts). */
    startedAt: integer("started_at"),
    finishedAt: integer("finished_at"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    // The claim scan: queued jobs in aged order (see CLAIM_ORDER), then due time. Partial, so finished jobs
    // cost it nothing; run_at is in it so the due-time filter and the idle pool's min(run_at) never read rows.
    // type and owner_id ride along: the claim's type filter reads no row, and the live counts (waiting and
    // delayed by type and owner) walk this index alone, bounded by the live queue (job_counts keeps only
    // ended jobs). One index over queued rows serves both, so enqueue and claim write no extra one.
    index("jobs_claim_idx")
      .on(sql.raw(`(${CLAIM_ORDER})`), t.runAt, t.id, t.type, t.ownerId)
      .where(sql`status = 'queued'`),
    // Back-pressure counts an owner's queued jobs of a type with one bounded probe (queued rows only).
    // Only jobs with an owner: system work without one (and the engine's hot path) pays nothing for it.
    index("jobs_owner_queued_idx")
      .on(t.ownerId, t.type)
      .where(sql`status = 'queued' AND owner_id IS NOT NULL`),
    // At most one queued job per dedupe key: enqueue upserts into it (DESIGN §3 debounce).
    uniqueIndex("jobs_dedupe_queued_idx")
      .on(t.dedupeKey)
      .where(sql`status = 'queued' AND dedupe_key IS NOT NULL`),
    // Lease expiry scans it by locked_until; type and owner_id ride along so the live counts (active jobs by
    // type and owner) read this index alone. Widening it adds no index write to claim or finish.
    index("jobs_active_lease_idx").on(t.lockedUntil, t.type, t.ownerId).where(sql`status = 'active'`),
    index("jobs_owner_idx").on(t.ownerId, t.id).where(sql`owner_id IS NOT NULL`),
    // The one index over ended jobs, written once when a job ends (enqueue writes none of it): retention
    // walks each (end status, type) oldest first a slice at a time, and job lists filtered by an end status
    // or a type gather their ids from it when the exact counts say that beats walking newest first
    // (src/queue/list.ts). Queries name `finished_at IS NOT NULL` so the planner may use it.
    index("jobs_ended_idx").on(t.status, t.type, t.finishedAt, t.id).where(sql`finished_at IS NOT NULL`),
    // A recipe's jobs by owner and state: the instant claim takes the oldest completed backlog job with one
    // index probe, and the backlog counts ready and in-flight jobs per recipe without scanning.
    index("jobs_recipe_idx")
      .on(t.recipeId, t.ownerId, t.status, t.finishedAt, t.id)
      .where(sql`recipe_id IS NOT NULL`),
  ],
);

/**
 * Counts of ENDED jobs (terminal statuses only) by scope, type and status, kept exact by the queue store in
 * the transaction that ends, retries or deletes a job (QueueStore#counted), plus two triggers for re-owning
 * and deleting outside it (migration job_count_triggers). Live jobs (queued, active) are not here: they are
 * counted at read time from their partial indexes, so enqueue and claim write no count. `scope` is
 * `''` for every job, `u:<userId>` for a user's own jobs and `c:<userId>` for the jobs of the end users whose
 * parent (app) is that user. Rows whose count fell to 0 stay (their number is bounded by scopes x types).
 */
export const jobCounts = sqliteTable(
  "job_counts",
  {
    scope: text("scope").notNull(),
    type: text("type").notNull(),
    status: text("status", { enum: TERMINAL_STATUSES }).notNull(),
    n: integer("n").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.scope, t.type, t.status] })],
);

/**
 * Holds a row only inside a transaction that adjusts `job_counts` itself for a bulk delete (a retention
 * slice subtracts its rows' counts in a few grouped statements); the delete trigger skips rows meanwhile.
 * Other connections never see the row: it is inserted and removed before that transaction commits.
 */
export const jobCountsDeferred = sqliteTable("job_counts_deferred", {
  id: integer("id").primaryKey(),
});

/**
 * Jobs that ended, per minute of `finished_at`, by scope (as in `job_counts`), type and end status: the
 * dashboard's throughput chart and the per-minute metrics read this instead of scanning `jobs`. Written by the
 * queue store, grouped per transaction, when jobs reach a terminal status; retention trims old minutes.
 */
export const jobThroughput = sqliteTable(
  "job_throughput",
  {
    scope: text("scope").notNull(),
    /** `finished_at` in whole minutes since the epoch. */
    minute: integer("minute").notNull(),
    type: text("type").notNull(),
    status: text("status", { enum: TERMINAL_STATUSES }).notNull(),
    n: integer("n").notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.scope, t.minute, t.type, t.status] }),
    index("job_throughput_minute_idx").on(t.minute),
  ],
);

export const jobItems = sqliteTable(
  "job_items",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    idx: integer("idx").notNull(),
    key: text("key").notNull(),
    input: text("input", { mode: "json" }).notNull(),
    status: text("status", { enum: ITEM_STATUSES }).notNull().default("pending"),
    result: text("result", { mode: "json" }),
    assetId: text("asset_id"),
    error: text("error", { mode: "json" }).$type<JobError>(),
    attempts: integer("attempts").notNull().default(0),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.idx] })],
);

/**
 * Attempts that ended without finishing the job: retried after an error, or lost to a dead worker (stalled),
 * or a failed/partial run an operator retried. The latest attempt lives on the job row itself; with these it
 * makes the job's timeline. Written only when an attempt is not the last, so a job that succeeds at once
 * costs nothing here.
 */
export const jobAttempts = sqliteTable(
  "job_attempts",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    attempt: integer("attempt").notNull(),
    outcome: text("outcome", { enum: ["retried", "stalled", "rerun"] }).notNull(),
    startedAt: integer("started_at"),
    endedAt: integer("ended_at").notNull(),
    error: text("error", { mode: "json" }).$type<JobError>(),
    /** When the next attempt was due (retried). */
    retryAt: integer("retry_at"),
  },
  (t) => [index("job_attempts_job_idx").on(t.jobId, t.endedAt)],
);

/**
 * Storage objects a job's input names (an uploaded image to edit, its mask), given at enqueue: the orphan
 * sweep asks which keys a job still needs with one index probe per key instead of reading every job's input.
 * The rows go with their job.
 */
export const jobInputKeys = sqliteTable(
  "job_input_keys",
  {
    jobId: text("job_id")
      .notNull()
      .references(() => jobs.id, { onDelete: "cascade" }),
    key: text("key").notNull(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.key] }), index("job_input_keys_key_idx").on(t.key)],
);

export const assets = sqliteTable(
  "assets",
  {
    id: text("id").primaryKey(),
    jobId: text("job_id").references(() => jobs.id, { onDelete: "set null" }),
    itemIdx: integer("item_idx"),
    ownerId: text("owner_id"),
    storageKey: text("storage_key").notNull().unique(),
    contentType: text("content_type").notNull(),
    bytes: integer("bytes").notNull(),
    width: integer("width"),
    height: integer("height"),
    thumbnailKey: text("thumbnail_key"),
    createdAt: integer("created_at").notNull(),
    deletedAt: integer("deleted_at"),
  },
  (t) => [
    index("assets_job_idx").on(t.jobId),
    // No index on owner_id: no statement looks assets up by owner (a user's images are found through their
    // jobs), and the instant claim, which moves a job's assets to the claimer, would rewrite one.
    // The orphan sweep asks whether a stored thumbnail still has its row: a probe, not a read of every asset.
    index("assets_thumbnail_key_idx").on(t.thumbnailKey).where(sql`thumbnail_key IS NOT NULL`),
  ],
);

export const cards = sqliteTable(
  "cards",
  {
    id: text("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    template: text("template").notNull(),
    data: text("data", { mode: "json" }).notNull(),
    version: integer("version").notNull().default(1),
    renderedVersion: integer("rendered_version").notNull().default(0),
    imageKey: text("image_key"),
    imageUrl: text("image_url"),
    renderError: text("render_error", { mode: "json" }).$type<JobError>(),
    /**
     * When the latest render was due to start (epoch ms). A change arriving more than CARD_DEBOUNCE_MS after it
     * renders at once; one arriving sooner waits for the end of that window (leading-edge debounce).
     */
    renderDueAt: integer("render_due_at"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("cards_owner_idx").on(t.ownerId, t.id)],
);

export const recipes = sqliteTable("recipes", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  description: text("description"),
  provider: text("provider").notNull(),
  model: text("model"),
  promptTemplate: text("prompt_template").notNull(),
  negativePrompt: text("negative_prompt"),
  variables: text("variables", { mode: "json" }).$type<RecipeVariable[]>().notNull(),
  /** An output preset name or an inline preset (images/presets). */
  output: text("output", { mode: "json" }).$type<string | Record<string, unknown>>(),
  /** Generation size (WIDTHxHEIGHT); null: the request's, else 1024x1024. */
  size: text("size"),
  creditCost: integer("credit_cost").notNull().default(1),
  backlogMin: integer("backlog_min").notNull().default(3),
  active: integer("active", { mode: "boolean" }).notNull().default(true),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

export const recipeUsage = sqliteTable(
  "recipe_usage",
  {
    recipeId: text("recipe_id")
      .notNull()
      .references(() => recipes.id, { onDelete: "cascade" }),
    variable: text("variable").notNull(),
    value: text("value").notNull(),
    count: integer("count").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.recipeId, t.variable, t.value] })],
);

/** Backlog health per recipe: consecutive failed backlog generations pause its top-ups for a while. */
export const backlogState = sqliteTable("backlog_state", {
  recipeId: text("recipe_id")
    .primaryKey()
    .references(() => recipes.id, { onDelete: "cascade" }),
  consecutiveFailures: integer("consecutive_failures").notNull().default(0),
  lastFailureAt: integer("last_failure_at"),
  lastError: text("last_error", { mode: "json" }).$type<JobError>(),
  lastSuccessAt: integer("last_success_at"),
  updatedAt: integer("updated_at").notNull(),
});

export const LEDGER_REASONS = ["grant", "charge", "refund", "instant", "debit"] as const;

export const creditLedger = sqliteTable(
  "credit_ledger",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    delta: integer("delta").notNull(),
    balanceAfter: integer("balance_after").notNull(),
    reason: text("reason", { enum: LEDGER_REASONS }).notNull(),
    jobId: text("job_id"),
    note: text("note"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("credit_ledger_user_idx").on(t.userId, t.id), index("credit_ledger_job_idx").on(t.jobId)],
);

export const webhookEndpoints = sqliteTable(
  "webhook_endpoints",
  {
    id: text("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    url: text("url").notNull(),
    secret: text("secret").notNull(),
    events: text("events", { mode: "json" }).$type<string[]>().notNull(),
    active: integer("active", { mode: "boolean" }).notNull().default(true),
    failureCount: integer("failure_count").notNull().default(0),
    failingSince: integer("failing_since"),
    disabledReason: text("disabled_reason"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("webhook_endpoints_owner_idx").on(t.ownerId)],
);

/** The signing secret of an account's per-job webhooks (`webhookUrl` on a job); endpoints have their own. */
export const webhookSecrets = sqliteTable("webhook_secrets", {
  ownerId: text("owner_id").primaryKey(),
  secret: text("secret").notNull(),
  /** Still signed with (as a second signature) for a day after a rotation, so receivers can switch over. */
  previousSecret: text("previous_secret"),
  rotatedAt: integer("rotated_at"),
  createdAt: integer("created_at").notNull(),
});

export const DELIVERY_STATUSES = ["pending", "delivered", "failed"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** One event for one destination; its id is the `webhook-id` header, the same on every attempt. */
export const webhookDeliveries = sqliteTable(
  "webhook_deliveries",
  {
    id: text("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    /** Null for a job's own `webhookUrl`. */
    endpointId: text("endpoint_id").references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    /** The job the event is about (no foreign key: jobs are deleted by retention before their deliveries). */
    jobId: text("job_id"),
    url: text("url").notNull(),
    eventType: text("event_type").notNull(),
    /** The exact body sent on every attempt. */
    payload: text("payload").notNull(),
    status: text("status", { enum: DELIVERY_STATUSES }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: integer("next_attempt_at"),
    lastAttemptAt: integer("last_attempt_at"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    lastDurationMs: integer("last_duration_ms"),
    createdAt: integer("created_at").notNull(),
    deliveredAt: integer("delivered_at"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.id),
    index("webhook_deliveries_owner_idx").on(t.ownerId, t.id),
    index("webhook_deliveries_job_idx").on(t.jobId),
    index("webhook_deliveries_created_idx").on(t.createdAt),
  ],
);

export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    key: text("key").notNull(),
    ownerId: text("owner_id").notNull(),
    requestHash: text("request_hash").notNull(),
    /** The answer's HTTP status; 0 while the first request is still running (the key is reserved). */
    status: integer("status").notNull(),
    response: text("response").notNull(),
    createdAt: integer("created_at").notNull(),
    /** The process running the first request while the key is reserved; null once answered. */
    lockedBy: text("locked_by"),
    /** A reservation not answered by then may be taken over (its holder died). */
    lockedUntil: integer("locked_until"),
  },
  (t) => [primaryKey({ columns: [t.ownerId, t.key] }), index("idempotency_keys_created_idx").on(t.createdAt)],
);

/**
 * The Easel processes sharing this database: each registers at start, heartbeats its row (with how many jobs
 * it runs) and removes it at shutdown. One whose heartbeat lapsed is dead: any live instance reaps its row
 * (db/pg/instances.ts). On PostgreSQL these are the cluster's instances; on SQLite there is one.
 */
export const instances = sqliteTable(
  "instances",
  {
    id: text("id").primaryKey(),
    host: text("host").notNull(),
    version: text("version").notNull(),
    startedAt: integer("started_at").notNull(),
    lastHeartbeatAt: integer("last_heartbeat_at").notNull(),
    jobsRunning: integer("jobs_running").notNull().default(0),
  },
  (t) => [index("instances_heartbeat_idx").on(t.lastHeartbeatAt)],
);

export type User = typeof users.$inferSelect;
export type ApiKey = typeof apiKeys.$inferSelect;
export type Job = typeof jobs.$inferSelect;
export type JobItem = typeof jobItems.$inferSelect;
export type JobAttempt = typeof jobAttempts.$inferSelect;
export type Asset = typeof assets.$inferSelect;
export type Card = typeof cards.$inferSelect;
export type Recipe = typeof recipes.$inferSelect;
export type CreditLedgerRow = typeof creditLedger.$inferSelect;
export type BacklogState = typeof backlogState.$inferSelect;
export type WebhookEndpoint = typeof webhookEndpoints.$inferSelect;
export type WebhookSecret = typeof webhookSecrets.$inferSelect;
export type WebhookDelivery = typeof webhookDeliveries.$inferSelect;
export type Instance = typeof instances.$inferSelect;
