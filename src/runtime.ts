import { readFileSync } from "node:fs";
import { Cron } from "croner";
import { createApp } from "./app";
import { type Config, ConfigError } from "./config";
import type { AppContext } from "./context";
import { Checkpointer } from "./db/checkpointer";
import { openDb } from "./db/client";
import { createLogger, type Logger } from "./log";
import { AuthService } from "./modules/auth/service";
import { backlogTopUpJob } from "./modules/backlog/job";
import { BacklogService, backlogOptions } from "./modules/backlog/service";
import { cardJobs } from "./modules/cards/jobs";
import { type CardRenderer, CardService } from "./modules/cards/service";
import { chargeGenerations, creditOptions } from "./modules/credits/generate";
import { CreditService } from "./modules/credits/service";
import { AssetService } from "./modules/generate/assets";
import { generateJob } from "./modules/generate/job";
import { GenerateService } from "./modules/generate/service";
import { IdempotencyService } from "./modules/idempotency/service";
import { InstantService } from "./modules/instant/service";
import { JobService } from "./modules/jobs/service";
import { Metrics } from "./modules/metrics/service";
import { scheduleSnapshots } from "./modules/ops/backup";
import { logJobOutcomes } from "./modules/ops/job-log";
import { writeServerLock } from "./modules/ops/lock";
import { runRetention, sweepStorage } from "./modules/ops/maintenance";
import { dbWritableCheck, HealthService } from "./modules/ops/service";
import { RealtimeService, realtimeOptions, socketServerOptions } from "./modules/realtime/service";
import { RecipeService, recordRecipeUsage } from "./modules/recipes/service";
import { UserService } from "./modules/users/service";
import { DELIVER_JOB } from "./modules/webhooks/fanout";
import { WebhookService, webhookOptions } from "./modules/webhooks/service";
import {
  createProviderRegistry,
  type ProviderCall,
  ProviderLookupError,
  type ProviderRegistry,
} from "./providers/registry";
import { type AnyJobDefinition, Queue } from "./queue";
import { createAvatarResolver, RenderPool } from "./render";
import { createStorage } from "./storage";

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
  // Terminal webhooks are queued inside each job's terminal transaction (no crash window); bound below.
  let webhooks: WebhookService | null = null;
  let credits: CreditService | null = null;
  let backlog: BacklogService | null = null;
  const queue = new Queue({
    // Refunds first, so the terminal webhook's payload already shows them.
    onTerminal: (job) => {
      credits?.onJobTerminal(job);
      backlog?.onJobTerminal(job);
      webhooks?.onJobTerminal(job);
    },
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
  const storage = createStorage(config);
  const metrics = new Metrics();
  const providers = providersFrom(config, (call) => metrics.providerCall(call));
  const assets = new AssetService(db.$client, storage);
  queue.define(
    generateJob({
      providers,
      storage,
      assets,
      itemTimeoutMs: config.ITEM_TIMEOUT_MS,
      itemConcurrency: config.BATCH_CONCURRENCY,
      itemMaxAttempts: config.ITEM_MAX_ATTEMPTS,
    }),
  );
  const renderer = lazyRenderPool(config.renderWorkers, (ms) => metrics.observeRender(ms));
  const cards = new CardService({
    db: db.$client,
    queue,
    storage,
    auth,
    renderer,
    resolveImage: createAvatarResolver({ guard: { allowPrivate: config.ALLOW_PRIVATE_URLS } }),
    config,
    now: opts.now,
  });
  queue.define(...cardJobs(cards));
  const recipes = new RecipeService({ db, providers, defaultBacklogMin: config.BACKLOG_MIN, now: opts.now });
  credits = new CreditService(db.$client, {
    ...creditOptions(config, opts.now),
    onLedger: (reason, delta) => metrics.credits(reason, delta),
  });
  const generate = new GenerateService({
    config,
    queue,
    providers,
    storage,
    auth,
    recipes: (id, variables) => recipes.expand(id, variables),
  });
  chargeGenerations(generate, credits);
  recordRecipeUsage(generate, recipes);
  backlog = new BacklogService(
    { db: db.$client, queue, recipes, generate, users },
    backlogOptions(config, opts.now),
  );
  queue.define(backlogTopUpJob(backlog));
  if (opts.jobs) queue.define(...opts.jobs);
  webhooks = new WebhookService({ db, queue, auth, log }, webhookOptions(config));
  const jobs = new JobService(queue, auth, assets);
  const health = new HealthService()
    .add(dbWritableCheck(db.$client))
    .add({ name: "storage", run: () => storage.check() })
    .add({ name: "render", run: () => renderer.check() })
    .add({
      name: "workers",
      run: () => {
        if (!queue.pool.running) throw new Error("worker pool is not running");
      },
    });
  metrics.watchQueue(queue, config.WORKER_CONCURRENCY);
  metrics.watchWebhookDeliveries(queue, DELIVER_JOB);
  metrics.watchDatabase(config.databasePath);
  metrics.watchItems(queue);
  const realtime = new RealtimeService(queue, jobs, realtimeOptions(config));
  metrics.watchSockets(() => realtime.sessions.size);
  return {
    config,
    db,
    log,
    metrics,
    queue,
    users,
    auth,
    jobs,
    health,
    idempotency: new IdempotencyService(db, opts.now),
    storage,
    providers,
    assets,
    cards,
    renderer,
    generate,
    realtime,
    webhooks,
    credits,
    recipes,
    backlog,
    instant: new InstantService({ db: db.$client, recipes, credits, backlog, assets, now: opts.now }),
  };
}

/**
 * The card render pool, started on first use: CLI commands build every service but most never render,
 * and worker threads are not free.
 */
export type LazyRenderer = CardRenderer & { check(): void; close(): Promise<void> };

function lazyRenderPool(size: number, observe: (ms: number) => void): LazyRenderer {
  let pool: RenderPool | null = null;
  const get = () => {
    pool ??= new RenderPool({ size });
    return pool;
  };
  return {
    render: async (template, data) => {
      const started = performance.now();
      const card = await get().render(template, data);
      observe(performance.now() - started);
      return card;
    },
    // Not started yet (no card rendered) is healthy: the pool starts on the first render.
    check: () => pool?.check(),
    close: async () => {
      await pool?.close();
      pool = null;
    },
  };
}

/** The provider registry from the environment: a provider is on when its key or URL is set. */
export function providersFrom(config: Config, onCall?: (call: ProviderCall) => void): ProviderRegistry {
  try {
    return registryFrom(config, onCall);
  } catch (err) {
    // The registry checks DEFAULT_PROVIDER at once: say so the way every other bad variable is said.
    if (err instanceof ProviderLookupError && config.DEFAULT_PROVIDER) {
      throw new ConfigError(
        `DEFAULT_PROVIDER: ${err.message}; set its key or URL, or choose another provider`,
      );
    }
    throw err;
  }
}

function registryFrom(config: Config, onCall: ((call: ProviderCall) => void) | undefined): ProviderRegistry {
  return createProviderRegistry({
    onCall,
    openaiApiKey: config.OPENAI_API_KEY,
    openaiBaseUrl: config.OPENAI_BASE_URL,
    hfToken: config.HF_TOKEN,
    hfBaseUrl: config.HF_BASE_URL,
    geminiApiKey: config.GEMINI_API_KEY,
    geminiBaseUrl: config.GEMINI_BASE_URL,
    replicateApiToken: config.REPLICATE_API_TOKEN,
    replicateBaseUrl: config.REPLICATE_BASE_URL,
    falKey: config.FAL_KEY,
    falQueueBaseUrl: config.FAL_QUEUE_URL,
    comfyuiUrl: config.COMFYUI_URL,
    comfyuiWorkflow: config.COMFYUI_WORKFLOW ? readFileSync(config.COMFYUI_WORKFLOW, "utf8") : undefined,
    a1111Url: config.A1111_URL,
    a1111Auth: config.A1111_AUTH,
    dashscopeApiKey: config.DASHSCOPE_API_KEY,
    dashscopeBaseUrl: config.DASHSCOPE_BASE_URL,
    placeholder: { latencyMs: config.PLACEHOLDER_LATENCY_MS },
    limits: config.PROVIDER_LIMITS,
    defaultProvider: config.DEFAULT_PROVIDER,
  });
}

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
  ctx.webhooks.start();
  ctx.realtime.start();
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
  // Retention runs in slices until done; stopping aborts it between slices, and the run at start-up picks
  // up whatever a previous process left (a backlog of history past retention is never skipped).
  const retention = new AbortController();
  const retain = async () => {
    try {
      const removed = await runRetention(ctx, retention.signal, () => checkpointer.checkpointNow());
      if (removed.jobs) log.info(removed, "retention cleanup");
    } catch (err) {
      log.error({ err }, "retention cleanup failed");
    }
  };
  const due = queue.retentionDue({
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
    new Cron(config.BACKLOG_CRON, { protect: true }, () => {
      try {
        const out = ctx.backlog.maintain();
        if (out.enqueued) log.info({ enqueued: out.enqueued }, "backlog top-up");
      } catch (err) {
        log.error({ err }, "backlog top-up failed");
      }
    }),
    new Cron("17 * * * *", { protect: true }, async () => {
      try {
        const swept = await sweepStorage(ctx);
        if (swept.deleted) log.info(swept, "storage orphan sweep");
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
  return { ctx, app, port, url: `http://127.0.0.1:${port}`, stop };
}
