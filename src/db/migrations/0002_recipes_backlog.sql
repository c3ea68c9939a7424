CREATE TABLE `backlog_state` (
	`recipe_id` text PRIMARY KEY NOT NULL,
	`consecutive_failures` integer DEFAULT 0 NOT NULL,
	`last_failure_at` integer,
	`last_error` text,
	`last_success_at` integer,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`recipe_id`) REFERENCES `recipes`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
ALTER TABLE `recipes` ADD `size` text;--> statement-breakpoint
CREATE INDEX `jobs_recipe_idx` ON `jobs` (`recipe_id`,`owner_id`,`status`,`finished_at`,`id`) WHERE recipe_id IS NOT NULL;