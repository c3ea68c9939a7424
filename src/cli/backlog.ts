import { Presets, SingleBar } from "cli-progress";
import type { Config } from "../config";
import type { BacklogService, BacklogStatus, MaintainResult } from "../modules/backlog/service";
import type { RecipeService } from "../modules/recipes/service";
import type { Queue } from "../queue";
import type { LazyRenderer } from "../render/lazy";
import { parse, printJsonOr, table, UsageError } from "./args";

/** What this file needs from the services, and nothing more. */
type Deps = {
  backlog: BacklogService;
  config: Config;
  queue: Queue;
  recipes: RecipeService;
  renderer: LazyRenderer;
};

const USAGE = `usage: easel backlog status [--json]
       easel backlog maintain [--recipe <id>] [--dry-run] [--wait [--process] [--timeout <s>]] [--json]

  maintain     queue the generations each active recipe is missing (up to BACKLOG_MAX_CONCURRENT)
  --wait       keep topping up until every recipe's backlog is full (a progress bar on stderr); the jobs
               are run by the server on this data dir, or by this process with --process
  --timeout    give up waiting after this many seconds (default 600)`;

const POLL_MS = 200;

/** `easel backlog …`: the backlog service straight on the database file, as the cron inside the server runs it. */
export async function backlogCommand(ctx: Deps, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    json: { type: "boolean" },
    recipe: { type: "string" },
    "dry-run": { type: "boolean" },
    wait: { type: "boolean" },
    process: { type: "boolean" },
    timeout: { type: "string" },
  });
  const json = Boolean(values.json);
  switch (positionals[0]) {
    case "status": {
      const statuses = await ctx.backlog.statusAll();
      printJsonOr(json, { recipes: statuses }, () => statusTable(statuses));
      return 0;
    }
    case "maintain": {
      if (values.wait && values["dry-run"]) throw new UsageError(`--wait and --dry-run do not mix\n${USAGE}`);
      if (values.process && !values.wait) throw new UsageError(`--process needs --wait\n${USAGE}`);
      const timeoutS = Number(values.timeout ?? 600);
      if (!Number.isFinite(timeoutS) || timeoutS <= 0)
        throw new UsageError(`--timeout must be seconds\n${USAGE}`);
      if (values.recipe) await ctx.recipes.active(values.recipe);
      const opts = { recipeId: values.recipe, dryRun: Boolean(values["dry-run"]) };
      const first = await ctx.backlog.maintain(opts);
      if (!values.wait) {
        printJsonOr(json, first, () => maintainLines(first));
        return 0;
      }
      if (!json) process.stdout.write(`${maintainLines(first)}\n`);
      if (values.process) ctx.queue.start();
      try {
        const outcome = await waitUntilFull(ctx, values.recipe, timeoutS * 1000);
        const statuses = await selected(ctx, values.recipe);
        printJsonOr(json, { ...outcome, maintain: first, recipes: statuses }, () =>
          outcome.full ? "backlog full" : `not full: ${outcome.reason}`,
        );
        return outcome.full ? 0 : 1;
      } finally {
        if (values.process) {
          await ctx.queue.stop(ctx.config.SHUTDOWN_GRACE_MS);
          await ctx.renderer.close();
        }
      }
    }
    default:
      throw new UsageError(USAGE);
  }
}

/** The active recipes a run looks after (one with --recipe). */
async function selected(ctx: Deps, recipeId: string | undefined): Promise<BacklogStatus[]> {
  const recipes = (await ctx.recipes.list({ includeInactive: false })).filter(
    (r) => r.backlogMin > 0 && (!recipeId || r.id === recipeId),
  );
  const out: BacklogStatus[] = [];
  for (const r of recipes) out.push(await ctx.backlog.status(r));
  return out;
}

/**
 * Tops up again every poll (slots free as jobs finish) until every recipe is full, every recipe still short
 * is stuck (paused by failures, or nothing can be queued and nothing is in flight), or the time is up.
 */
async function waitUntilFull(
  ctx: Deps,
  recipeId: string | undefined,
  timeoutMs: number,
): Promise<{ full: boolean; reason?: string }> {
  const deadline = Date.now() + timeoutMs;
  const bar = new SingleBar(
    {
      format: "backlog [{bar}] {value}/{total} ready | {inFlight} in flight",
      stream: process.stderr,
      hideCursor: true,
    },
    Presets.shades_classic,
  );
  const fill = (s: BacklogStatus[]) => s.reduce((n, r) => n + Math.min(r.ready, r.min), 0);
  let statuses = await selected(ctx, recipeId);
  bar.start(
    statuses.reduce((n, r) => n + r.min, 0),
    fill(statuses),
    { inFlight: statuses.reduce((n, r) => n + r.inFlight, 0) },
  );
  try {
    for (;;) {
      const run = await ctx.backlog.maintain({ recipeId });
      statuses = await selected(ctx, recipeId);
      bar.update(fill(statuses), { inFlight: statuses.reduce((n, r) => n + r.inFlight, 0) });
      const short = statuses.filter((s) => s.ready < s.min);
      if (short.length === 0) return { full: true };
      const stuck = short.filter((s) => isStuck(s, run));
      if (stuck.length === short.length) {
        return { full: false, reason: stuck.map((s) => `${s.recipeId}: ${stuckReason(s, run)}`).join("; ") };
      }
      if (Date.now() > deadline) {
        return {
          full: false,
          reason: `timed out after ${timeoutMs / 1000} s (is a server running on this data dir? or use --process)`,
        };
      }
      await Bun.sleep(POLL_MS);
    }
  } finally {
    bar.stop();
  }
}

function isStuck(s: BacklogStatus, run: MaintainResult): boolean {
  if (s.failures.paused) return true;
  const skipped = run.recipes.find((r) => r.recipeId === s.recipeId)?.skipped;
  return s.inFlight === 0 && (skipped === "no_inputs" || skipped === "provider_unavailable");
}

function stuckReason(s: BacklogStatus, run: MaintainResult): string {
  if (s.failures.paused) {
    return `paused after ${s.failures.consecutiveFailures} failures (last: ${s.failures.lastError?.code ?? "?"})`;
  }
  return run.recipes.find((r) => r.recipeId === s.recipeId)?.reason ?? "cannot queue";
}

function maintainLines(run: MaintainResult): string {
  const verb = run.dryRun ? "would queue" : "queued";
  const lines = run.recipes.map((r) => {
    const skipped = r.skipped ? ` (${r.skipped}${r.reason ? `: ${r.reason}` : ""})` : "";
    return `${r.recipeId}: ${verb} ${r.enqueued} of ${r.deficit} missing${skipped}`;
  });
  lines.push(`${verb} ${run.enqueued}; ${run.inFlight}/${run.maxConcurrent} backlog jobs in flight`);
  return lines.join("\n");
}

function statusTable(statuses: BacklogStatus[]): string {
  if (statuses.length === 0) return "no recipes";
  const header = ["recipe", "min", "ready", "in flight", "deficit", "oldest ready", "state"];
  const rows = statuses.map((s) => [
    s.recipeId,
    String(s.min),
    String(s.ready),
    String(s.inFlight),
    String(s.deficit),
    s.oldestReadyAt ? new Date(s.oldestReadyAt).toISOString() : "-",
    stateOf(s),
  ]);
  return table(header, rows);
}

/**
 * An active recipe with fewer ready generations than its minimum, or paused by failures: what a monitor should
 * alert on (scripts/check-backlog-status.ts exits 1), and what the state column never calls "ok".
 */
export function needsAttention(s: BacklogStatus): boolean {
  return s.active && (s.ready < s.min || s.failures.paused);
}

function stateOf(s: BacklogStatus): string {
  if (!s.active) return "inactive";
  const f = s.failures;
  if (f.paused && f.pausedUntil) {
    return `paused until ${new Date(f.pausedUntil).toISOString()} (${f.consecutiveFailures} failures)`;
  }
  if (s.ready < s.min) {
    const filling = s.inFlight > 0 ? `, ${s.inFlight} in flight` : "";
    return `short (${s.min - s.ready} missing${filling})`;
  }
  if (f.consecutiveFailures > 0) return `ok (${f.consecutiveFailures}/${f.limit} failures)`;
  return "ok";
}
