import { Cron } from "croner";
import { createApp } from "./app";
import type { Config } from "./config";
import type { AppContext } from "./context";
import { Checkpointer } from "./db/checkpointer";
import { openDb } from "./db/client";
import { createLogger, type Logger } from "./log";
import { AuthService } from "./modules/auth/service";
import { IdempotencyService } from "./modules/idempotency/service";
import { JobService } from "./modules/jobs/service";
import { dbWritableCheck, HealthService } from "./modules/ops/service";
import { UserService } from "./modules/users/service";
import { type AnyJobDefinition, Queue } from "./queue";

export type ServiceOptions = {
  log?: Logger;
  /** Extra job types to register (tests, embedders). */
  jobs?: AnyJobDefinition[];
  now?: () => number;
};

/** Opens the database and builds every service, without starting anything (the CLI uses this as is). */
export function createServices(config: Config, opts: ServiceOptions = {}): AppContext {
  const log =
    opts.log ??
    createLogger({
      level: config.LOG_LEVEL,
      pretty: config.NODE_ENV === "development" && process.stdout.isTTY,
    });
  const db = openDb(config.databasePath, { synchronous: config.SQLITE_SYNCHRONOUS });
  const users = new UserService(db, opts.now);
  const auth = new AuthService(db, users, {
    dataDir: config.dataDir,
    adminKey: config.ADMIN_KEY,
    jwtSecret: config.JWT_SECRET,
    tokenTtlSeconds: config.CLIENT_TOKEN_TTL_S,
    now: opts.now,
  });
  const queue = new Queue({
    db: db.$client,
    concurrency: config.WORKER_CONCURRENCY,
    pollIntervalMs: config.POLL_INTERVAL_MS,
    leaseMs: config.STALLED_AFTER_MS,
    stalledMax: config.STALLED_MAX,
    defaultTimeoutMs: config.JOB_TIMEOUT_MS,
    defaultMaxAttempts: config.JOB_MAX_ATTEMPTS,
    log,
    now: opts.now,
  });
  if (opts.jobs) queue.define(...opts.jobs);
  const health = new HealthService().add(dbWritableCheck(db.$client)).add({
    name: "workers",
    run: () => {
      if (!queue.pool.running) throw new Error("worker pool is not running");
    },
  });
  return {
    config,
    db,
    log,
    queue,
    users,
    auth,
    jobs: new JobService(queue, auth),
    health,
    idempotency: new IdempotencyService(db, opts.now),
  };
}

export type Runtime = {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  /** The port actually bound (PORT=0 picks a free one). */
  port: number;
  url: string;
  stop(): Promise<void>;
};

/**
 * Starts what `easel serve` needs: recovers jobs left by a dead process, starts the worker pool and the
 * schedules, and listens. `stop()` (also on SIGTERM/SIGINT) stops claiming, drains within the grace period,
 * releases what is left and closes the database.
 */
export async function startRuntime(
  config: Config,
  opts: ServiceOptions & { handleSignals?: boolean } = {},
): Promise<Runtime> {
  const ctx = createServices(config, opts);
  const { log, queue } = ctx;
  const { generatedKey } = ctx.auth.bootstrapAdmin();
  if (generatedKey) {
    process.stdout.write(
      `\nNo ADMIN_KEY set: generated an admin key (also saved to ${config.dataDir}/admin-key):\n\n  ${generatedKey}\n\n`,
    );
  }
  const checkpointer = new Checkpointer(ctx.db.$client, config.databasePath);
  await checkpointer.start();
  const recovered = queue.recoverStalled(true);
  if (recovered.requeued + recovered.failed > 0)
    log.warn(recovered, "recovered jobs left active by a previous process");
  queue.start();

  const timers: { stop(): void }[] = [];
  const sweepEvery = Math.max(250, Math.min(30_000, Math.floor(config.STALLED_AFTER_MS / 2)));
  const sweep = setInterval(() => {
    try {
      queue.recoverStalled(false);
    } catch (err) {
      log.error({ err }, "stalled sweep failed");
    }
  }, sweepEvery);
  timers.push({ stop: () => clearInterval(sweep) });
  timers.push(
    new Cron(config.RETENTION_CRON, { protect: true }, () => {
      const deleted = queue.cleanupRetention(config.RETAIN_COMPLETED_HOURS, config.RETAIN_FAILED_HOURS);
      ctx.idempotency.prune(24 * 3_600_000);
      if (deleted.length) log.info({ deleted: deleted.length }, "retention cleanup");
    }),
  );

  const app = createApp(ctx).listen({
    port: config.PORT,
    hostname: config.HOST,
    maxRequestBodySize: config.MAX_BODY_BYTES + 64 * 1024,
  });
  const port = app.server?.port ?? config.PORT;
  log.info({ port, dataDir: config.dataDir }, "easel listening");

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info({ graceMs: config.SHUTDOWN_GRACE_MS }, "shutting down");
      for (const t of timers) t.stop();
      await app.stop();
      await queue.stop(config.SHUTDOWN_GRACE_MS);
      await checkpointer.stop();
      ctx.db.$client.close();
      log.info("stopped");
    })());

  if (opts.handleSignals) {
    const onSignal = () => {
      void stop().then(() => process.exit(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
  return { ctx, app, port, url: `http://127.0.0.1:${port}`, stop };
}
