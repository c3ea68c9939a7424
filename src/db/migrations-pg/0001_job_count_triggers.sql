-- PostgreSQL's counterpart of SQLite's migration 0006_job_count_triggers: job_counts holds ended jobs only,
-- kept by the queue store in the transactions that end, retry or delete jobs; this trigger takes a count back
-- when an ended job is deleted outside the store's counted path (an operator's DELETE, a future tool), so
-- the counts stay exact whoever deletes. The store's retention slices insert a row into job_counts_deferred
-- (invisible to every other transaction, removed before commit) and count their deletes themselves; the
-- trigger then does nothing.
-- Per statement, not per row as in SQLite: PostgreSQL hands the deleted rows over as a transition table, so a
-- bulk delete costs one grouped UPDATE instead of one function call per row.
-- SQLite's 0006 also backfilled counts for existing jobs; a PostgreSQL database starts empty (its data is
-- copied in with the counts), so there is nothing to backfill.
CREATE FUNCTION jobs_counts_ended_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM job_counts_deferred) THEN
    RETURN NULL;
  END IF;
  UPDATE job_counts c SET n = c.n - d.n
    FROM (
      SELECT s.scope, o.type, o.status, count(*) AS n
        FROM ended_rows o
        LEFT JOIN users u ON u.id = o.owner_id
        CROSS JOIN LATERAL (VALUES (''), ('u:' || o.owner_id), ('c:' || u.parent_id)) AS s(scope)
        WHERE o.status IN ('completed', 'partial', 'failed', 'cancelled') AND s.scope IS NOT NULL
        GROUP BY s.scope, o.type, o.status
    ) d
    WHERE c.scope = d.scope AND c.type = d.type AND c.status = d.status;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER jobs_counts_ended_delete AFTER DELETE ON jobs
  REFERENCING OLD TABLE AS ended_rows
  FOR EACH STATEMENT EXECUTE FUNCTION jobs_counts_ended_delete();
