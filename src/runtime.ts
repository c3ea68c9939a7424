/** Starting and stopping `easel serve`: the services come from services.ts; this file only starts and wires them. */
import { Cron } from "croner";
import { createApp } from "./app";
import type { Config } from "./config";
import type { AppContext } from "./context";
import { Checkpointer } from "./db/checkpointer";
import { scheduleSnapshots } from "./modules/ops/backup";
import { logJobOutcomes } from "./modules/ops/job-log";
import { writeServerLock } from "./modules/ops/lock";
import { runRetention, sweepStorage } from "./modules/ops/maintenance";
import { socketServerOptions } from "./modules/realtime/service";
import { createServices, type ServiceOptions } from "./services";

/**
 * PORT=0 means "any free port"; URLs handed to clients (files, status, websocket) need the real one, and
 * services are built before the server listens, so pick it first.
 */
async function withConcretePort(config: Config): Promise<Config> {
  if (config.PORT !== 0) return config;
  const probe = Bun.serve({ port: 0, hostname: config.HOST, fetch: () => new Response() });
  const port = probe.port ?? 0;
  await probe.stop(true);
  return {
    ...config,
    PORT: port,
    publicUrl: config.PUBLIC_URL?.replace(/\/$/, "") ?? `http://localhost:${port}`,
  };
}

export type Runtime = {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  /** The port actually bound (PORT=0 picks a free one). */
  port: number;
  url: string;
  /** The database worker: WAL checkpoints, and retention's vacuum and `PRAGMA optimize` off the event loop. */
  checkpointer: Checkpointer;
  stop(): Promise<void>;
};

/**
 * Starts what `easel serve` needs: recovers jobs left by a dead process, starts the worker pool and the
 * schedules, and listens. `stop()` (also on SIGTERM/SIGINT) stops claiming, drains within the grace period,
 * releases what is left and closes the database.
 */
export async function startRuntime(
  requested: Config,
  opts: ServiceOptions & { handleSignals?: boolean } = {},
): Promise<Runtime> {
  const config = await withConcretePort(requested);
  const ctx = createServices(config, opts);
  const { log, queue } = ctx;
  const { generatedKey } = await ctx.auth.bootstrapAdmin();
  if (generatedKey) {
    process.stdout.write(
      `\nNo ADMIN_KEY set: generated an admin key (also saved to ${config.dataDir}/admin-key):\n\n  ${generatedKey}\n\n`,
    );
  }
  const checkpointer = new Checkpointer(ctx.db.$client, config.databasePath);
  await checkpointer.start();
  const recovered = await queue.recoverStalled(true);
  if (recovered.requeued + recovered.failed > 0)
    log.warn(recovered, "recovered jobs left active by a previous process");
  await ctx.webhooks.start();
  ctx.realtime.start();
  queue.start();

  const timers: { stop(): void }[] = [];
  const sweepEvery = Math.max(250, Math.min(30_000, Math.floor(config.STALLED_AFTER_MS / 2)));
  const sweep = setInterval(() => {
    queue.recoverStalled(false).catch((err) => log.error({ err }, "stalled sweep failed"));
  }, sweepEvery);
  timers.push({ stop: () => clearInterval(sweep) });
  // Retention runs in slices until done; stopping aborts it between slices, and the run at start-up picks
  // up whatever a previous process left (a backlog of history past retention is never skipped).
  const retention = new AbortController();
  const retain = async () => {
    try {
      const removed = await runRetention(ctx, retention.signal, checkpointer);
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
  timers.push({
    stop: () => {
      clearTimeout(firstRetention);
      retention.abort();
    },
  });
  timers.push(
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
  );

  const app = createApp(ctx).listen({
    port: config.PORT,
    hostname: config.HOST,
    // The app enforces MAX_BODY_BYTES with a JSON 413 (Content-Length up front, chunked bodies as they are
    // read); Bun's own cap, which answers with an empty 413 before the app sees the request, is a backstop.
    maxRequestBodySize: config.MAX_BODY_BYTES * 4 + 1024 * 1024,
    websocket: socketServerOptions(config),
  });
  ctx.realtime.attach(app.server);
  const port = app.server?.port ?? config.PORT;
  if (config.BACKUP_CRON) timers.push(scheduleSnapshots(ctx, config.BACKUP_CRON));
  timers.push({ stop: logJobOutcomes(queue, log) });
  const lock = writeServerLock(config.dataDir, port);
  log.info({ port, dataDir: config.dataDir }, "easel listening");

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info({ graceMs: config.SHUTDOWN_GRACE_MS }, "shutting down");
      for (const t of timers) t.stop();
      ctx.realtime.stop();
      ctx.webhooks.stop();
      await app.stop();
      await queue.stop(config.SHUTDOWN_GRACE_MS);
      await ctx.renderer.close();
      await checkpointer.stop();
      ctx.db.$client.close();
      lock.release();
      log.info("stopped");
    })());

  if (opts.handleSignals) {
    const onSignal = () => {
      void stop().then(() => process.exit(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
  return { ctx, app, port, url: `http://127.0.0.1:${port}`, checkpointer, stop };
}
