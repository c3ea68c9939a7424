import { Cron } from "croner";
import type { Config } from "../../config";
import type { Logger } from "../../log";
import type { Queue } from "../../queue";
import type { BacklogService } from "../backlog/service";
import { runRetention, sweepStorage, type Upkeep } from "./maintenance";

type Deps = Parameters<typeof runRetention>[0] &
  Parameters<typeof sweepStorage>[0] & {
    config: Config;
    log: Logger;
    queue: Queue;
    backlog: Pick<BacklogService, "maintain">;
  };

export type Schedules = { stop(): void };

/**
 * The server's scheduled work: the stalled sweep, retention (at once when history is past due, then on
 * RETENTION_CRON), the backlog top-up and the storage orphan sweep. It runs on one instance at a time: on
 * SQLite the only one; in a cluster the leader (runtime.ts starts it when this instance takes the lead and
 * stops it when it loses it). `upkeep` (SQLite's database worker) lets retention pause for WAL checkpoints
 * and runs its vacuum off the event loop.
 */
export async function startSchedules(ctx: Deps, opts: { upkeep?: Upkeep } = {}): Promise<Schedules> {
  const { config, log, queue } = ctx;
  const stops: (() => void)[] = [];
  const sweepEvery = Math.max(250, Math.min(30_000, Math.floor(config.STALLED_AFTER_MS / 2)));
  const sweep = setInterval(() => {
    queue.recoverStalled(false).catch((err) => log.error({ err }, "stalled sweep failed"));
  }, sweepEvery);
  stops.push(() => clearInterval(sweep));
  // Retention runs in slices until done; stopping aborts it between slices, and the next start picks up
  // whatever is left (a backlog of history past retention is never skipped).
  const retention = new AbortController();
  const retain = async () => {
    try {
      const removed = await runRetention(ctx, retention.signal, opts.upkeep);
      if (removed.jobs) log.info(removed, "retention cleanup");
    } catch (err) {
      log.error({ err }, "retention cleanup failed");
    }
  };
  const due = await queue.retentionDue({
    completedHours: config.RETAIN_COMPLETED_HOURS,
    failedHours: config.RETAIN_FAILED_HOURS,
  });
  const firstRetention = due ? setTimeout(retain, 1000) : undefined;
  stops.push(() => {
    clearTimeout(firstRetention);
    retention.abort();
  });
  const crons = [
    new Cron(config.RETENTION_CRON, { protect: true }, retain),
    new Cron(config.BACKLOG_CRON, { protect: true }, async () => {
      try {
        const out = await ctx.backlog.maintain();
        if (out.enqueued) log.info({ enqueued: out.enqueued }, "backlog top-up");
      } catch (err) {
        log.error({ err }, "backlog top-up failed");
      }
    }),
    new Cron("17 * * * *", { protect: true }, async () => {
      try {
        const swept = await sweepStorage(ctx);
        if (swept.deleted || swept.tempFiles) log.info(swept, "storage orphan sweep");
      } catch (err) {
        log.error({ err }, "storage orphan sweep failed");
      }
    }),
  ];
  for (const c of crons) stops.push(() => c.stop());
  return {
    stop() {
      for (const s of stops) s();
    },
  };
}
