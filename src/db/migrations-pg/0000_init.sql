CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" bigint NOT NULL,
	"last_used_at" bigint,
	"revoked_at" bigint,
	"expires_at" bigint,
	CONSTRAINT "api_keys_hash_unique" UNIQUE("hash")
);
--> statement-breakpoint
CREATE TABLE "assets" (
	"id" text PRIMARY KEY NOT NULL,
	"job_id" text,
	"item_idx" bigint,
	"owner_id" text,
	"storage_key" text NOT NULL,
	"content_type" text NOT NULL,
	"bytes" bigint NOT NULL,
	"width" bigint,
	"height" bigint,
	"thumbnail_key" text,
	"created_at" bigint NOT NULL,
	"deleted_at" bigint,
	CONSTRAINT "assets_storage_key_unique" UNIQUE("storage_key")
);
--> statement-breakpoint
CREATE TABLE "backlog_state" (
	"recipe_id" text PRIMARY KEY NOT NULL,
	"consecutive_failures" bigint DEFAULT 0 NOT NULL,
	"last_failure_at" bigint,
	"last_error" jsonb,
	"last_success_at" bigint,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "cards" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"template" text NOT NULL,
	"data" jsonb NOT NULL,
	"version" bigint DEFAULT 1 NOT NULL,
	"rendered_version" bigint DEFAULT 0 NOT NULL,
	"image_key" text,
	"image_url" text,
	"render_error" jsonb,
	"render_due_at" bigint,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "credit_ledger" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"delta" bigint NOT NULL,
	"balance_after" bigint NOT NULL,
	"reason" text NOT NULL,
	"job_id" text,
	"note" text,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "dashboard_sessions" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"key_id" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"revoked_at" bigint
);
--> statement-breakpoint
CREATE TABLE "idempotency_keys" (
	"key" text NOT NULL,
	"owner_id" text NOT NULL,
	"request_hash" text NOT NULL,
	"status" bigint NOT NULL,
	"response" text NOT NULL,
	"created_at" bigint NOT NULL,
	"locked_by" text,
	"locked_until" bigint,
	CONSTRAINT "idempotency_keys_owner_id_key_pk" PRIMARY KEY("owner_id","key")
);
--> statement-breakpoint
CREATE TABLE "job_attempts" (
	"job_id" text NOT NULL,
	"attempt" bigint NOT NULL,
	"outcome" text NOT NULL,
	"started_at" bigint,
	"ended_at" bigint NOT NULL,
	"error" jsonb,
	"retry_at" bigint
);
--> statement-breakpoint
CREATE TABLE "job_counts" (
	"scope" text NOT NULL,
	"type" text NOT NULL,
	"status" text NOT NULL,
	"n" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "job_counts_scope_type_status_pk" PRIMARY KEY("scope","type","status")
);
--> statement-breakpoint
CREATE TABLE "job_counts_deferred" (
	"id" bigint PRIMARY KEY NOT NULL
);
--> statement-breakpoint
CREATE TABLE "job_items" (
	"job_id" text NOT NULL,
	"idx" bigint NOT NULL,
	"key" text NOT NULL,
	"input" jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"result" jsonb,
	"asset_id" text,
	"error" jsonb,
	"attempts" bigint DEFAULT 0 NOT NULL,
	"updated_at" bigint NOT NULL,
	CONSTRAINT "job_items_job_id_idx_pk" PRIMARY KEY("job_id","idx")
);
--> statement-breakpoint
CREATE TABLE "job_throughput" (
	"scope" text NOT NULL,
	"minute" bigint NOT NULL,
	"type" text NOT NULL,
	"status" text NOT NULL,
	"n" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "job_throughput_scope_minute_type_status_pk" PRIMARY KEY("scope","minute","type","status")
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"status" text NOT NULL,
	"priority" bigint DEFAULT 0 NOT NULL,
	"input" jsonb NOT NULL,
	"result" jsonb,
	"error" jsonb,
	"progress" bigint DEFAULT 0 NOT NULL,
	"progress_message" text,
	"attempts" bigint DEFAULT 0 NOT NULL,
	"max_attempts" bigint NOT NULL,
	"run_at" bigint NOT NULL,
	"locked_by" text,
	"locked_until" bigint,
	"stalled_count" bigint DEFAULT 0 NOT NULL,
	"timeout_ms" bigint,
	"dedupe_key" text,
	"owner_id" text,
	"recipe_id" text,
	"credits_charged" bigint DEFAULT 0 NOT NULL,
	"credits_refunded" bigint DEFAULT 0 NOT NULL,
	"webhook_url" text,
	"metadata" jsonb,
	"created_at" bigint NOT NULL,
	"started_at" bigint,
	"finished_at" bigint,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "recipe_usage" (
	"recipe_id" text NOT NULL,
	"variable" text NOT NULL,
	"value" text NOT NULL,
	"count" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "recipe_usage_recipe_id_variable_value_pk" PRIMARY KEY("recipe_id","variable","value")
);
--> statement-breakpoint
CREATE TABLE "recipes" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"provider" text NOT NULL,
	"model" text,
	"prompt_template" text NOT NULL,
	"negative_prompt" text,
	"variables" jsonb NOT NULL,
	"output" jsonb,
	"size" text,
	"credit_cost" bigint DEFAULT 1 NOT NULL,
	"backlog_min" bigint DEFAULT 3 NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" text PRIMARY KEY NOT NULL,
	"external_id" text,
	"name" text NOT NULL,
	"role" text NOT NULL,
	"parent_id" text,
	"credits" bigint DEFAULT 0 NOT NULL,
	"unlimited" boolean DEFAULT false NOT NULL,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"endpoint_id" text,
	"job_id" text,
	"url" text NOT NULL,
	"event_type" text NOT NULL,
	"payload" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" bigint DEFAULT 0 NOT NULL,
	"next_attempt_at" bigint,
	"last_attempt_at" bigint,
	"last_status_code" bigint,
	"last_error" text,
	"last_duration_ms" bigint,
	"created_at" bigint NOT NULL,
	"delivered_at" bigint,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_endpoints" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"url" text NOT NULL,
	"secret" text NOT NULL,
	"events" jsonb NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"failure_count" bigint DEFAULT 0 NOT NULL,
	"failing_since" bigint,
	"disabled_reason" text,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_secrets" (
	"owner_id" text PRIMARY KEY NOT NULL,
	"secret" text NOT NULL,
	"previous_secret" text,
	"rotated_at" bigint,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "assets" ADD CONSTRAINT "assets_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "backlog_state" ADD CONSTRAINT "backlog_state_recipe_id_recipes_id_fk" FOREIGN KEY ("recipe_id") REFERENCES "public"."recipes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credit_ledger" ADD CONSTRAINT "credit_ledger_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dashboard_sessions" ADD CONSTRAINT "dashboard_sessions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dashboard_sessions" ADD CONSTRAINT "dashboard_sessions_key_id_api_keys_id_fk" FOREIGN KEY ("key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_attempts" ADD CONSTRAINT "job_attempts_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_items" ADD CONSTRAINT "job_items_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "recipe_usage" ADD CONSTRAINT "recipe_usage_recipe_id_recipes_id_fk" FOREIGN KEY ("recipe_id") REFERENCES "public"."recipes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_endpoint_id_webhook_endpoints_id_fk" FOREIGN KEY ("endpoint_id") REFERENCES "public"."webhook_endpoints"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_keys_user_idx" ON "api_keys" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "assets_job_idx" ON "assets" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "assets_owner_idx" ON "assets" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "cards_owner_idx" ON "cards" USING btree ("owner_id","id");--> statement-breakpoint
CREATE INDEX "credit_ledger_user_idx" ON "credit_ledger" USING btree ("user_id","id");--> statement-breakpoint
CREATE INDEX "credit_ledger_job_idx" ON "credit_ledger" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "dashboard_sessions_expires_idx" ON "dashboard_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "idempotency_keys_created_idx" ON "idempotency_keys" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "job_attempts_job_idx" ON "job_attempts" USING btree ("job_id","ended_at");--> statement-breakpoint
CREATE INDEX "job_throughput_minute_idx" ON "job_throughput" USING btree ("minute");--> statement-breakpoint
CREATE INDEX "jobs_claim_idx" ON "jobs" USING btree ((run_at - priority * 1000),"run_at","id","type","owner_id") WHERE status = 'queued';--> statement-breakpoint
CREATE INDEX "jobs_owner_queued_idx" ON "jobs" USING btree ("owner_id","type") WHERE status = 'queued' AND owner_id IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "jobs_dedupe_queued_idx" ON "jobs" USING btree ("dedupe_key") WHERE status = 'queued' AND dedupe_key IS NOT NULL;--> statement-breakpoint
CREATE INDEX "jobs_active_lease_idx" ON "jobs" USING btree ("locked_until","type","owner_id") WHERE status = 'active';--> statement-breakpoint
CREATE INDEX "jobs_owner_idx" ON "jobs" USING btree ("owner_id","id") WHERE owner_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX "jobs_finished_status_idx" ON "jobs" USING btree ("status","id") WHERE finished_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX "jobs_type_idx" ON "jobs" USING btree ("type","id");--> statement-breakpoint
CREATE INDEX "jobs_retention_idx" ON "jobs" USING btree ("status","finished_at","id") WHERE finished_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX "jobs_recipe_idx" ON "jobs" USING btree ("recipe_id","owner_id","status","finished_at","id") WHERE recipe_id IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "users_external_idx" ON "users" USING btree ("parent_id","external_id");--> statement-breakpoint
CREATE UNIQUE INDEX "users_top_external_idx" ON "users" USING btree ("external_id") WHERE parent_id IS NULL;--> statement-breakpoint
CREATE INDEX "users_parent_idx" ON "users" USING btree ("parent_id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_endpoint_idx" ON "webhook_deliveries" USING btree ("endpoint_id","id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_owner_idx" ON "webhook_deliveries" USING btree ("owner_id","id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_job_idx" ON "webhook_deliveries" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_created_idx" ON "webhook_deliveries" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "webhook_endpoints_owner_idx" ON "webhook_endpoints" USING btree ("owner_id");