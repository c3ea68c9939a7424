CREATE TABLE `job_counts` (
	`scope` text NOT NULL,
	`type` text NOT NULL,
	`status` text NOT NULL,
	`n` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`scope`, `type`, `status`)
);
--> statement-breakpoint
CREATE TABLE `job_counts_deferred` (
	`id` integer PRIMARY KEY NOT NULL
);
--> statement-breakpoint
CREATE TABLE `job_throughput` (
	`scope` text NOT NULL,
	`minute` integer NOT NULL,
	`type` text NOT NULL,
	`status` text NOT NULL,
	`n` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`scope`, `minute`, `type`, `status`)
);
--> statement-breakpoint
CREATE INDEX `job_throughput_minute_idx` ON `job_throughput` (`minute`);--> statement-breakpoint
DROP INDEX `jobs_finished_idx`;--> statement-breakpoint
DROP INDEX `jobs_claim_idx`;--> statement-breakpoint
DROP INDEX `jobs_active_lease_idx`;--> statement-breakpoint
CREATE INDEX `jobs_finished_status_idx` ON `jobs` (`status`,`id`) WHERE finished_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_type_idx` ON `jobs` (`type`,`id`);--> statement-breakpoint
CREATE INDEX `jobs_retention_idx` ON `jobs` (`status`,`finished_at`,`id`) WHERE finished_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_claim_idx` ON `jobs` ((run_at - priority * 1000),`run_at`,`id`,`type`,`owner_id`) WHERE status = 'queued';--> statement-breakpoint
CREATE INDEX `jobs_active_lease_idx` ON `jobs` (`locked_until`,`type`,`owner_id`) WHERE status = 'active';--> statement-breakpoint
CREATE INDEX `idempotency_keys_created_idx` ON `idempotency_keys` (`created_at`);