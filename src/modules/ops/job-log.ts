import type { Job, JobError } from "../../db/schema";
import type { Logger } from "../../log";
import type { Queue } from "../../queue";

/** The fields every job log line carries: enough to find the job and its owner, never its input. */
function jobFields(job: Job) {
  const ms = job.startedAt != null && job.finishedAt != null ? job.finishedAt - job.startedAt : undefined;
  return { jobId: job.id, type: job.type, userId: job.ownerId ?? undefined, attempts: job.attempts, ms };
}

const errorFields = (error: JobError | null | undefined) =>
  error ? { code: error.code, error: error.message } : {};

/**
 * One log line per job outcome: failures and partial batches at warn, retries at info, completions at debug
 * (a busy server completes thousands a minute). Returns the unsubscribe function.
 */
export function logJobOutcomes(queue: Queue, log: Logger): () => void {
  const offs = [
    queue.events.on("job:completed", ({ job }) => log.debug(jobFields(job), "job completed")),
    queue.events.on("job:partial", ({ job }) => log.warn(jobFields(job), "job partially failed")),
    queue.events.on("job:failed", ({ job, error }) =>
      log.warn({ ...jobFields(job), ...errorFields(error) }, "job failed"),
    ),
    queue.events.on("job:retrying", ({ job, error }) =>
      log.info({ ...jobFields(job), ...errorFields(error), runAt: job.runAt }, "job will retry"),
    ),
  ];
  return () => {
    for (const off of offs) off();
  };
}
