CREATE TABLE `instances` (
	`id` text PRIMARY KEY NOT NULL,
	`host` text NOT NULL,
	`version` text NOT NULL,
	`started_at` integer NOT NULL,
	`last_heartbeat_at` integer NOT NULL,
	`jobs_running` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `instances_heartbeat_idx` ON `instances` (`last_heartbeat_at`);