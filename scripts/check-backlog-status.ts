#!/usr/bin/env bun
/**
 * For cron and monitoring: prints each recipe's backlog (`easel backlog status`), same flags (--json).
 * Exits 1 when an active recipe is short of its backlog_min or paused by failures, so a cron job can alert.
 *
 *   bun scripts/check-backlog-status.ts [--json]
 */
import { backlogCommand, needsAttention } from "../src/cli/backlog";
import { loadConfig } from "../src/config";
import { silentLogger } from "../src/log";
import { createServices } from "../src/services";

const ctx = createServices(loadConfig(), { log: silentLogger });
try {
  await backlogCommand(ctx, ["status", ...process.argv.slice(2)]);
  // The same test as the state column's, so the exit code and the printed state always agree.
  process.exitCode = (await ctx.backlog.statusAll()).some(needsAttention) ? 1 : 0;
} finally {
  ctx.db.$client.close();
}
