-- Exact job counts (job_counts) and the per-minute throughput rollup (job_throughput), maintained by
-- triggers so every statement that inserts, re-statuses, re-owns or deletes a job updates them in its own
-- transaction: the counts are exact after any crash, and no store path has to remember them.
-- Scopes: '' every job; 'u:<id>' jobs owned by <id>; 'c:<id>' jobs owned by end users whose parent is <id>.
-- Users are never deleted nor re-parented and exist before their jobs, so the parent looked up when a count
-- is taken back is the one it was added under. Each change has a trigger for the '' scope and one, guarded by
-- WHEN, for the owner scopes: a job without an owner runs one statement per change instead of three.
-- A retention slice marks its transaction in job_counts_deferred and applies its deletes as a few grouped
-- upserts instead (QueueStore#counted); the triggers stand aside meanwhile. That row is removed before the
-- transaction commits, so no other connection ever sees it.
CREATE TRIGGER jobs_counts_insert AFTER INSERT ON jobs
WHEN NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  INSERT INTO job_counts (scope, type, status, n) VALUES ('', NEW.type, NEW.status, 1)
    ON CONFLICT (scope, type, status) DO UPDATE SET n = n + 1;
END;
--> statement-breakpoint
CREATE TRIGGER jobs_counts_insert_owned AFTER INSERT ON jobs
WHEN NEW.owner_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  INSERT INTO job_counts (scope, type, status, n) SELECT 'u:' || NEW.owner_id, NEW.type, NEW.status, 1 WHERE NEW.owner_id IS NOT NULL
    ON CONFLICT (scope, type, status) DO UPDATE SET n = n + 1;
  INSERT INTO job_counts (scope, type, status, n) SELECT 'c:' || parent_id, NEW.type, NEW.status, 1 FROM users
    WHERE id = NEW.owner_id AND parent_id IS NOT NULL
    ON CONFLICT (scope, type, status) DO UPDATE SET n = n + 1;
END;
--> statement-breakpoint
CREATE TRIGGER jobs_counts_update AFTER UPDATE OF status ON jobs
WHEN OLD.status IS NOT NEW.status AND NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  UPDATE job_counts SET n = n - 1 WHERE scope = '' AND type = OLD.type AND status = OLD.status;
  INSERT INTO job_counts (scope, type, status, n) VALUES ('', NEW.type, NEW.status, 1)
    ON CONFLICT (scope, type, status) DO UPDATE SET n = n + 1;
END;
--> statement-breakpoint
CREATE TRIGGER jobs_counts_update_owned AFTER UPDATE OF status, owner_id ON jobs
WHEN (OLD.status IS NOT NEW.status OR OLD.owner_id IS NOT NEW.owner_id)
  AND (OLD.owner_id IS NOT NULL OR NEW.owner_id IS NOT NULL) AND NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  UPDATE job_counts SET n = n - 1 WHERE scope = 'u:' || OLD.owner_id AND type = OLD.type AND status = OLD.status;
  UPDATE job_counts SET n = n - 1
    WHERE scope = 'c:' || (SELECT parent_id FROM users WHERE id = OLD.owner_id) AND type = OLD.type AND status = OLD.status;
  INSERT INTO job_counts (scope, type, status, n) SELECT 'u:' || NEW.owner_id, NEW.type, NEW.status, 1 WHERE NEW.owner_id IS NOT NULL
    ON CONFLICT (scope, type, status) DO UPDATE SET n = n + 1;
  INSERT INTO job_counts (scope, type, status, n) SELECT 'c:' || parent_id, NEW.type, NEW.status, 1 FROM users
    WHERE id = NEW.owner_id AND parent_id IS NOT NULL
    ON CONFLICT (scope, type, status) DO UPDATE SET n = n + 1;
END;
--> statement-breakpoint
CREATE TRIGGER jobs_counts_delete AFTER DELETE ON jobs
WHEN NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  UPDATE job_counts SET n = n - 1 WHERE scope = '' AND type = OLD.type AND status = OLD.status;
END;
--> statement-breakpoint
CREATE TRIGGER jobs_counts_delete_owned AFTER DELETE ON jobs
WHEN OLD.owner_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM job_counts_deferred) BEGIN
  UPDATE job_counts SET n = n - 1 WHERE scope = 'u:' || OLD.owner_id AND type = OLD.type AND status = OLD.status;
  UPDATE job_counts SET n = n - 1
    WHERE scope = 'c:' || (SELECT parent_id FROM users WHERE id = OLD.owner_id) AND type = OLD.type AND status = OLD.status;
END;
--> statement-breakpoint
-- A job counts in the rollup each time a run of it ends (queued or active to terminal; a retried job counts
-- again when its new run ends); an instant claim changing its owner later does not move it.
CREATE TRIGGER jobs_throughput_finish AFTER UPDATE OF status ON jobs
WHEN NEW.status IN ('completed', 'partial', 'failed', 'cancelled') AND OLD.status IN ('queued', 'active') BEGIN
  INSERT INTO job_throughput (scope, minute, type, status, n)
    VALUES ('', coalesce(NEW.finished_at, NEW.updated_at) / 60000, NEW.type, NEW.status, 1)
    ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = n + 1;
END;
--> statement-breakpoint
CREATE TRIGGER jobs_throughput_finish_owned AFTER UPDATE OF status ON jobs
WHEN NEW.owner_id IS NOT NULL AND NEW.status IN ('completed', 'partial', 'failed', 'cancelled')
  AND OLD.status IN ('queued', 'active') BEGIN
  INSERT INTO job_throughput (scope, minute, type, status, n)
    SELECT 'u:' || NEW.owner_id, coalesce(NEW.finished_at, NEW.updated_at) / 60000, NEW.type, NEW.status, 1 WHERE true
    ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = n + 1;
  INSERT INTO job_throughput (scope, minute, type, status, n)
    SELECT 'c:' || parent_id, coalesce(NEW.finished_at, NEW.updated_at) / 60000, NEW.type, NEW.status, 1 FROM users
    WHERE id = NEW.owner_id AND parent_id IS NOT NULL
    ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = n + 1;
END;
--> statement-breakpoint
INSERT INTO job_counts (scope, type, status, n) SELECT '', type, status, count(*) FROM jobs GROUP BY type, status;
--> statement-breakpoint
INSERT INTO job_counts (scope, type, status, n)
  SELECT 'u:' || owner_id, type, status, count(*) FROM jobs WHERE owner_id IS NOT NULL GROUP BY owner_id, type, status;
--> statement-breakpoint
INSERT INTO job_counts (scope, type, status, n)
  SELECT 'c:' || u.parent_id, j.type, j.status, count(*) FROM jobs j JOIN users u ON u.id = j.owner_id
  WHERE u.parent_id IS NOT NULL GROUP BY u.parent_id, j.type, j.status;
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
