import type { Job } from "../db/schema";
import type { Sql } from "../db/sql";
import type { JobLogger, TerminalHook } from "./define";

/** Whether any of `hooks` has work for `job` (see `TerminalHook.applies`). */
export function hooksApply(hooks: readonly (TerminalHook | undefined)[], job: Job): boolean {
  for (const hook of hooks) if (hook?.applies(job)) return true;
  return false;
}

/**
 * The one way a job's terminal hooks (refunds, usage counters, webhooks) run, whoever ends the job: the
 * pool settling an attempt, a cancel, or the stalled sweep. Each hook runs in a savepoint of the caller's
 * transaction: a hook that throws rolls back only its own writes and is logged, so it can neither undo the
 * job's terminal state nor the other jobs ended in the same transaction (a whole stalled sweep, a group of
 * settlements), and the next hook still runs.
 */
export async function runTerminalHooks(
  sql: Sql,
  hooks: readonly (TerminalHook | undefined)[],
  job: Job,
  log: JobLogger,
): Promise<void> {
  for (const hook of hooks) {
    if (!hook?.applies(job)) continue;
    try {
      await sql.savepoint(async () => hook.run(job));
    } catch (err) {
      log.error({ err, jobId: job.id, status: job.status }, "terminal hook failed");
    }
  }
}
