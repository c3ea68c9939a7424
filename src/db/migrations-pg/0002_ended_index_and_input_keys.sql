CREATE TABLE "job_input_keys" (
	"job_id" text NOT NULL,
	"key" text NOT NULL,
	CONSTRAINT "job_input_keys_job_id_key_pk" PRIMARY KEY("job_id","key")
);
--> statement-breakpoint
DROP INDEX "jobs_finished_status_idx";--> statement-breakpoint
DROP INDEX "jobs_type_idx";--> statement-breakpoint
DROP INDEX "jobs_retention_idx";--> statement-breakpoint
ALTER TABLE "job_input_keys" ADD CONSTRAINT "job_input_keys_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "job_input_keys_key_idx" ON "job_input_keys" USING btree ("key");--> statement-breakpoint
CREATE INDEX "assets_thumbnail_key_idx" ON "assets" USING btree ("thumbnail_key") WHERE thumbnail_key IS NOT NULL;--> statement-breakpoint
CREATE INDEX "jobs_ended_idx" ON "jobs" USING btree ("status","type","finished_at","id") WHERE finished_at IS NOT NULL;