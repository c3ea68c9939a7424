-- Exact job counts split by what grows. History (ended jobs) grows without bound, the live queue does not:
-- - job_counts holds only TERMINAL statuses (completed, partial, failed, cancelled). The store adds a run's
--   end (and its job_throughput minute) as grouped upserts in the same transaction that ends it
--   (QueueStore#counted: a group-committed batch of hundreds of ends costs a few statements), and likewise
--   takes a count back when a job is retried or deleted by retention. Enqueue and claim touch no count.
-- - live counts (queued waiting/delayed, active) are read at query time from the partial indexes over live
--   rows only (jobs_claim_idx, jobs_active_lease_idx, both covering type and owner_id): that read is
--   bounded by the live queue, never by history.
-- Why not triggers on status: measured on this schema, any per-row UPDATE trigger on jobs costs the finish
-- path ~1.5 us even when its WHEN is false, and ~4.5 us doing one count and one rollup upsert, against ~4 us
-- for the finish itself (an INSERT trigger likewise doubles an enqueue); the queue drained at 35k jobs/s
-- with them against 60k+ without.
-- The instant claim, which hands an ended backlog job to a user, moves the job's owner scopes itself
-- (src/queue/feature-store.ts): a trigger there cost the claim about a fifth of its throughput.
-- One trigger remains, on a statement the queue's own paths never run, so it costs them nothing:
-- - a DELETE of an ended job outside the store's counted path takes its count back (the store's retention
--   slices mark their transaction in job_counts_deferred and count their deletes grouped; that row is
--   removed before the transaction commits, so no other connection ever sees it).
-- Scopes: '' every job; 'u:<id>' jobs owned by <id>; 'c:<id>' jobs owned by end users whose parent is <id>.
-- Users are never deleted nor re-parented and exist before their jobs, so the parent looked up when a count
-- is taken back is the one it was added under.
CREATE TRIGGER jobs_counts_ended_delete AFTER DELETE ON jobs
WHEN OLD.status IN ('completed', 'partial', 'failed', 'cancelled') AND NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  UPDATE job_counts SET n = n - 1
    WHERE scope IN ('', 'u:' || OLD.owner_id, 'c:' || (SELECT parent_id FROM users WHERE id = OLD.owner_id))
      AND type = OLD.type AND status = OLD.status;
END;
--> statement-breakpoint
INSERT INTO job_counts (scope, type, status, n) SELECT '', type, status, count(*) FROM jobs
  WHERE status IN ('completed', 'partial', 'failed', 'cancelled') GROUP BY type, status;
--> statement-breakpoint
INSERT INTO job_counts (scope, type, status, n)
  SELECT 'u:' || owner_id, type, status, count(*) FROM jobs
  WHERE owner_id IS NOT NULL AND status IN ('completed', 'partial', 'failed', 'cancelled') GROUP BY owner_id, type, status;
--> statement-breakpoint
INSERT INTO job_counts (scope, type, status, n)
  SELECT 'c:' || u.parent_id, j.type, j.status, count(*) FROM jobs j JOIN users u ON u.id = j.owner_id
  WHERE u.parent_id IS NOT NULL AND j.status IN ('completed', 'partial', 'failed', 'cancelled')
  GROUP BY u.parent_id, j.type, j.status;
--> statement-breakpoint
INSERT INTO job_throughput (scope, minute, type, status, n)
  SELECT '', finished_at / 60000, type, status, count(*) FROM jobs
  WHERE finished_at IS NOT NULL AND status IN ('completed', 'partial', 'failed', 'cancelled')
  GROUP BY finished_at / 60000, type, status;
--> statement-breakpoint
INSERT INTO job_throughput (scope, minute, type, status, n)
  SELECT 'u:' || owner_id, finished_at / 60000, type, status, count(*) FROM jobs
  WHERE owner_id IS NOT NULL AND finished_at IS NOT NULL AND status IN ('completed', 'partial', 'failed', 'cancelled')
  GROUP BY owner_id, finished_at / 60000, type, status;
--> statement-breakpoint
INSERT INTO job_throughput (scope, minute, type, status, n)
  SELECT 'c:' || u.parent_id, j.finished_at / 60000, j.type, j.status, count(*) FROM jobs j JOIN users u ON u.id = j.owner_id
  WHERE u.parent_id IS NOT NULL AND j.finished_at IS NOT NULL AND j.status IN ('completed', 'partial', 'failed', 'cancelled')
  GROUP BY u.parent_id, j.finished_at / 60000, j.type, j.status;
