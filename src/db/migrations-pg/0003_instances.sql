CREATE TABLE "instances" (
	"id" text PRIMARY KEY NOT NULL,
	"host" text NOT NULL,
	"version" text NOT NULL,
	"started_at" bigint NOT NULL,
	"last_heartbeat_at" bigint NOT NULL,
	"jobs_running" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX "instances_heartbeat_idx" ON "instances" USING btree ("last_heartbeat_at");