ALTER TABLE `idempotency_keys` ADD `locked_by` text;--> statement-breakpoint
ALTER TABLE `idempotency_keys` ADD `locked_until` integer;