#!/usr/bin/env bun
/**
 * For cron: tops the backlog up once (`easel backlog maintain`), same flags. On a host where no server runs,
 * `--wait --process` also generates the images in this process before exiting.
 *
 *   bun scripts/run-backlog-maintenance.ts [--recipe <id>] [--dry-run] [--wait [--process]] [--json]
 */
import { backlogCommand } from "../src/cli/backlog";
import { loadConfig } from "../src/config";
import { silentLogger } from "../src/log";
import { createServices } from "../src/services";

const ctx = createServices(loadConfig(), { log: silentLogger });
try {
  process.exitCode = await backlogCommand(ctx, ["maintain", ...process.argv.slice(2)]);
} finally {
  ctx.db.$client.close();
}
