CREATE TABLE `dashboard_sessions` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`key_id` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`revoked_at` integer,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`key_id`) REFERENCES `api_keys`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `dashboard_sessions_expires_idx` ON `dashboard_sessions` (`expires_at`);--> statement-breakpoint
DROP INDEX `jobs_claim_idx`;--> statement-breakpoint
CREATE INDEX `jobs_owner_queued_idx` ON `jobs` (`owner_id`,`type`) WHERE status = 'queued' AND owner_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_claim_idx` ON `jobs` ((run_at - priority * 1000),`run_at`,`id`) WHERE status = 'queued';--> statement-breakpoint
ALTER TABLE `api_keys` ADD `expires_at` integer;--> statement-breakpoint
ALTER TABLE `cards` ADD `render_due_at` integer;--> statement-breakpoint
ALTER TABLE `idempotency_keys` ADD `locked_by` text;--> statement-breakpoint
ALTER TABLE `idempotency_keys` ADD `locked_until` integer;