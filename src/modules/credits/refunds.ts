import type { Job, JobError, JobItem } from "../../db/schema";
import { REQUEST_FAULT_CODES } from "../../providers/http";

/**
 * Whether a failure with this error is refunded. A missing error (a never-run item of a dead job) is; a
 * failure that was the request's fault (REQUEST_FAULT_CODES) never is, whatever its own `refundable` says.
 */
export function isRefundable(error: JobError | null | undefined): boolean {
  if (!error) return true;
  return error.refundable !== false && !REQUEST_FAULT_CODES.has(error.code);
}

type ItemState = Pick<JobItem, "status" | "input" | "error">;

/** Images an item stands for: its own `n`, else the job's, else one. Charges are per image. */
function imagesOf(job: Job, item: ItemState): number {
  const own = (item.input as { n?: unknown } | null)?.n;
  const jobN = (job.input as { n?: unknown } | null)?.n;
  const n = typeof own === "number" ? own : typeof jobN === "number" ? jobN : 1;
  return Math.max(1, n);
}

/**
 * The total a job in its final state is owed back (not what is still to pay: the caller subtracts what was
 * already refunded, so a retried job that fails again is never refunded twice).
 *
 * - completed: nothing.
 * - failed, partial, cancelled with items: the share of the charge for every image not delivered whose
 *   failure is refundable — a failed item by its own error, a never-finished item by the job's error
 *   (cancelled and stalled jobs are refundable). A cancelled single image is refunded in full; a cancelled
 *   batch keeps paying for the items it already delivered.
 * - without items: the whole charge when the job's error is refundable.
 *
 * Never more than `creditsCharged`; rounded down when a batch's charge does not split evenly.
 */
export function refundOwed(job: Job, items: ItemState[]): number {
  const charged = job.creditsCharged;
  if (charged <= 0 || job.status === "completed" || job.status === "queued" || job.status === "active")
    return 0;
  const jobRefundable = isRefundable(job.error);
  if (items.length === 0) return jobRefundable ? charged : 0;
  let total = 0;
  let owed = 0;
  for (const item of items) {
    const images = imagesOf(job, item);
    total += images;
    if (item.status === "completed") continue;
    const refundable = item.status === "failed" ? isRefundable(item.error) : jobRefundable;
    if (refundable) owed += images;
  }
  return Math.min(charged, Math.floor((charged * owed) / total));
}
