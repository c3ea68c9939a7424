CREATE TABLE `job_input_keys` (
	`job_id` text NOT NULL,
	`key` text NOT NULL,
	PRIMARY KEY(`job_id`, `key`),
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `job_input_keys_key_idx` ON `job_input_keys` (`key`);--> statement-breakpoint
DROP INDEX `jobs_finished_status_idx`;--> statement-breakpoint
DROP INDEX `jobs_type_idx`;--> statement-breakpoint
DROP INDEX `jobs_retention_idx`;--> statement-breakpoint
CREATE INDEX `jobs_ended_idx` ON `jobs` (`status`,`type`,`finished_at`,`id`) WHERE finished_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX `assets_thumbnail_key_idx` ON `assets` (`thumbnail_key`) WHERE thumbnail_key IS NOT NULL;--> statement-breakpoint
-- Generations queued before this migration named their uploaded image and mask in their input only.
INSERT OR IGNORE INTO `job_input_keys` (`job_id`, `key`)
  SELECT id, json_extract(input, '$.imageKey') FROM jobs
  WHERE type = 'generate' AND json_extract(input, '$.imageKey') IS NOT NULL
  UNION ALL SELECT id, json_extract(input, '$.maskKey') FROM jobs
  WHERE type = 'generate' AND json_extract(input, '$.maskKey') IS NOT NULL;
