/** Starting and stopping `easel serve`: the services come from services.ts; this file only starts and wires them. */
import { createApp } from "./app";
import { type Config, ConfigError, clusterRefusal } from "./config";
import type { AppContext } from "./context";
import { Checkpointer } from "./db/checkpointer";
import { openDatabase } from "./db/open";
import { runAsLeader } from "./db/pg/leader";
import { PgNotifier } from "./db/pg/notify";
import { createLogger, type Logger } from "./log";
import { scheduleSnapshots } from "./modules/ops/backup";
import { logJobOutcomes } from "./modules/ops/job-log";
import { writeServerLock } from "./modules/ops/lock";
import { type Schedules, startSchedules } from "./modules/ops/schedules";
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

/**
 * What start-up checks before it opens anything: refuses settings a cluster cannot run with (ConfigError, one
 * line), and says once what it will not do on PostgreSQL. Whether to schedule SQLite snapshots (BACKUP_CRON).
 */
function preflight(config: Config, log: Logger): { scheduleBackups: boolean } {
  const refusal = clusterRefusal(config);
  if (refusal) throw new ConfigError(refusal);
  if (config.DATABASE_URL && config.BACKUP_CRON) {
    log.warn(
      "BACKUP_CRON is ignored with DATABASE_URL: snapshots copy a SQLite file; back PostgreSQL up with its own tools (pg_dump, or your provider's managed snapshots)",
    );
    return { scheduleBackups: false };
  }
  return { scheduleBackups: config.BACKUP_CRON !== undefined };
}

export type Runtime = {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  /** The port actually bound (PORT=0 picks a free one). */
  port: number;
  url: string;
  /**
   * SQLite's database worker: WAL checkpoints, and retention's vacuum and `PRAGMA optimize` off the event
   * loop. Null on PostgreSQL.
   */
  checkpointer: Checkpointer | null;
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
  const log =
    opts.log ??
    createLogger({
      level: requested.LOG_LEVEL,
      pretty: requested.NODE_ENV === "development" && process.stdout.isTTY,
    });
  const { scheduleBackups } = preflight(requested, log);
  const config = await withConcretePort(requested);
  const database = opts.database ?? (await openDatabase(config));
  const notifier =
    database.backend === "postgres" && config.DATABASE_URL
      ? new PgNotifier({ url: config.DATABASE_URL, sql: database.sql, log })
      : undefined;
  const ctx = createServices(config, { ...opts, log, database, notifier });
  const { queue } = ctx;
  const { generatedKey } = await ctx.auth.bootstrapAdmin();
  if (generatedKey) {
    process.stdout.write(
      `\nNo ADMIN_KEY set: generated an admin key (also saved to ${config.dataDir}/admin-key):\n\n  ${generatedKey}\n\n`,
    );
  }
  const checkpointer = ctx.sqlite ? new Checkpointer(ctx.sqlite.$client, config.databasePath) : null;
  await checkpointer?.start();
  const recovered = await queue.recoverStalled(true);
  if (recovered.requeued + recovered.failed > 0)
    log.warn(recovered, "recovered jobs left active by a previous process");
  await ctx.webhooks.start();
  await ctx.realtime.start();
  queue.start();

  const timers: { stop(): void }[] = [];
  const scheduled = await runSchedules(ctx, checkpointer, notifier ? config.DATABASE_URL : undefined);

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
  if (scheduleBackups && config.BACKUP_CRON) timers.push(scheduleSnapshots(ctx, config.BACKUP_CRON));
  timers.push({ stop: logJobOutcomes(queue, log) });
  // One server per SQLite file; instances of a cluster share DATA_DIR when STORAGE_SHARED says so.
  const lock = ctx.sqlite ? writeServerLock(config.dataDir, port) : null;
  log.info({ port, dataDir: config.dataDir, database: database.backend }, "easel listening");

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info({ graceMs: config.SHUTDOWN_GRACE_MS }, "shutting down");
      await scheduled.stop();
      for (const t of timers) t.stop();
      await ctx.realtime.stop();
      ctx.webhooks.stop();
      await app.stop();
      await queue.stop(config.SHUTDOWN_GRACE_MS);
      await ctx.renderer.close();
      await checkpointer?.stop();
      await notifier?.close();
      await database.close();
      lock?.release();
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

/**
 * The scheduled work runs on one instance at a time: on SQLite this one; in a cluster (`leaderUrl`) the
 * instance holding the schedules' advisory lock, taken over by another when it stops or dies.
 */
async function runSchedules(
  ctx: AppContext,
  checkpointer: Checkpointer | null,
  leaderUrl: string | undefined,
): Promise<{ stop(): Promise<void> }> {
  const upkeep = checkpointer ?? undefined;
  if (!leaderUrl) {
    const schedules = await startSchedules(ctx, { upkeep });
    return { stop: async () => schedules.stop() };
  }
  let schedules: Schedules | null = null;
  const leadership = runAsLeader(
    "easel:schedules",
    async () => {
      ctx.log.info({ instance: ctx.queue.workerId }, "leading the cluster's scheduled work");
      schedules = await startSchedules(ctx, { upkeep });
    },
    () => {
      schedules?.stop();
      schedules = null;
    },
    // Named after the instance, so an operator (and the cluster tests) can see who leads in pg_stat_activity.
    { url: leaderUrl, log: ctx.log, applicationName: `easel-leader ${ctx.queue.workerId}`.slice(0, 63) },
  );
  return { stop: () => leadership.stop() };
}
