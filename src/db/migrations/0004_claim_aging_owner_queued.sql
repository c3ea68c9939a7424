DROP INDEX `jobs_claim_idx`;--> statement-breakpoint
CREATE INDEX `jobs_owner_queued_idx` ON `jobs` (`owner_id`,`type`) WHERE status = 'queued' AND owner_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_claim_idx` ON `jobs` ((run_at - priority * 1000),`run_at`,`id`) WHERE status = 'queued';