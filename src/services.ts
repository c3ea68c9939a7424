/**
 * Building the services: everything `easel serve` and the CLI commands share. Nothing here starts (no
 * workers, timers or listening socket): runtime.ts starts what the server needs, CLI commands use the
 * services as they are.
 */
import pkg from "../package.json";
import type { Config } from "./config";
import type { AppContext } from "./context";
import { type OpenedDatabase, openSqlite } from "./db/open";
import { InstanceRegistry } from "./db/pg/instances";
import type { PgNotifier } from "./db/pg/notify";
import { createLogger, type Logger } from "./log";
import { AuthService } from "./modules/auth/service";
import { backlogTopUpJob } from "./modules/backlog/job";
import { BacklogService, backlogOptions } from "./modules/backlog/service";
import { cardJobs } from "./modules/cards/jobs";
import { CardService } from "./modules/cards/service";
import { chargeGenerations, creditOptions } from "./modules/credits/generate";
import { CreditService } from "./modules/credits/service";
import { AssetService } from "./modules/generate/assets";
import { generateJob } from "./modules/generate/job";
import { GenerateService } from "./modules/generate/service";
import { IdempotencyService } from "./modules/idempotency/service";
import { InstantService } from "./modules/instant/service";
import { JobService } from "./modules/jobs/service";
import { Metrics } from "./modules/metrics/service";
import { dbWritableCheck, HealthService, listenCheck, pgReachableCheck } from "./modules/ops/service";
import { NotifyFrameRelay } from "./modules/realtime/relay";
import { RealtimeService, realtimeOptions } from "./modules/realtime/service";
import { RecipeService, recordRecipeUsage } from "./modules/recipes/service";
import { UserService } from "./modules/users/service";
import { DELIVER_JOB } from "./modules/webhooks/fanout";
import { WebhookService, webhookOptions } from "./modules/webhooks/service";
import { providersFrom } from "./providers/from-config";
import { type AnyJobDefinition, pgQueueBackend, Queue, sqliteQueueBackend } from "./queue";
import { createAvatarResolver } from "./render";
import { lazyRenderPool } from "./render/lazy";
import { createStorage } from "./storage";

export type ServiceOptions = {
  log?: Logger;
  /** Extra job types to register (tests, embedders). */
  jobs?: AnyJobDefinition[];
  now?: () => number;
  /** The database to build on (src/db/open.ts). @defaultValue the SQLite file at `config.databasePath` */
  database?: OpenedDatabase;
  /**
   * Cluster mode: this instance's LISTEN connection. Jobs enqueued by other instances wake this one's pool,
   * and WebSocket/SSE frames cross instances through it.
   */
  notifier?: PgNotifier;
};

/** Builds every service on the database, without starting anything (the CLI uses this as is). */
export function createServices(config: Config, opts: ServiceOptions = {}): AppContext {
  const log =
    opts.log ??
    createLogger({
      level: config.LOG_LEVEL,
      pretty: config.NODE_ENV === "development" && process.stdout.isTTY,
    });
  const database = opts.database ?? openSqlite(config);
  const sql = database.sql;
  const sqlite = database.backend === "sqlite" ? database.db : null;
  const users = new UserService(sql, opts.now);
  const auth = new AuthService(sql, users, {
    dataDir: config.dataDir,
    adminKey: config.ADMIN_KEY,
    jwtSecret: config.JWT_SECRET,
    tokenTtlSeconds: config.CLIENT_TOKEN_TTL_S,
    now: opts.now,
    networked: database.backend === "postgres",
  });
  // Terminal webhooks are queued inside each job's terminal transaction (no crash window); bound below.
  let webhooks: WebhookService | null = null;
  let credits: CreditService | null = null;
  let backlog: BacklogService | null = null;
  const queue = new Queue({
    // Refunds first, so the terminal webhook's payload already shows them.
    onTerminal: [
      { applies: (job) => credits?.refundApplies(job) ?? false, run: (job) => credits?.onJobTerminal(job) },
      { applies: (job) => backlog?.isBacklogJob(job) ?? false, run: (job) => backlog?.onJobTerminal(job) },
      { applies: (job) => webhooks?.wantsTerminal(job) ?? false, run: (job) => webhooks?.onJobTerminal(job) },
    ],
    // A retry runs again what was refunded, so it is paid for again (402 refuses the retry).
    onRetry: (job) => credits?.onJobRetry(job),
    // Each started pool lists itself in `instances`; on PostgreSQL the stalled sweep re-queues the jobs of
    // an instance whose heartbeat lapsed.
    backend:
      database.backend === "sqlite"
        ? sqliteQueueBackend(database.db.$client, { instances: { version: pkg.version } })
        : pgQueueBackend(database.sql, {
            notifier: opts.notifier,
            relaxed: database.relaxed,
            instances: { version: pkg.version },
          }),
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
  const assets = new AssetService(sql, storage, queue);
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
  const renderer = lazyRenderPool({ size: config.renderWorkers, engine: config.CARD_RENDERER }, (ms) =>
    metrics.observeRender(ms),
  );
  const cards = new CardService({
    sql,
    queue,
    storage,
    auth,
    renderer,
    resolveImage: createAvatarResolver({ guard: { allowPrivate: config.ALLOW_PRIVATE_URLS } }),
    config,
    now: opts.now,
  });
  queue.define(...cardJobs(cards, { renderConcurrency: config.renderWorkers * 2 }));
  const recipes = new RecipeService({ sql, providers, defaultBacklogMin: config.BACKLOG_MIN, now: opts.now });
  credits = new CreditService(sql, queue, {
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
  backlog = new BacklogService({ sql, queue, recipes, generate, users }, backlogOptions(config, opts.now));
  queue.define(backlogTopUpJob(backlog));
  if (opts.jobs) queue.define(...opts.jobs);
  const jobs = new JobService(queue, auth, assets);
  webhooks = new WebhookService({ sql, queue, auth, log, jobs, cards }, webhookOptions(config));
  const health = new HealthService().add(
    database.backend === "sqlite" ? dbWritableCheck(database.sql) : pgReachableCheck(database.sql),
  );
  if (opts.notifier) health.add(listenCheck(opts.notifier));
  health
    .add({ name: "storage", run: () => storage.check() })
    .add({ name: "render", run: () => renderer.check() })
    .add({
      name: "workers",
      run: () => {
        if (!queue.running) throw new Error("worker pool is not running");
      },
    });
  metrics.watchQueue(queue, config.WORKER_CONCURRENCY);
  metrics.watchAdmission(generate.admission);
  metrics.watchWebhookDeliveries(queue, DELIVER_JOB);
  if (sqlite) metrics.watchDatabase(config.databasePath);
  metrics.watchItems(queue);
  const relay = opts.notifier
    ? new NotifyFrameRelay(opts.notifier, {
        instanceId: queue.workerId,
        onError: (err) => log.error({ err }, "could not relay a frame to the other instances"),
      })
    : undefined;
  const realtime = new RealtimeService(queue, jobs, realtimeOptions(config), cards.events, relay);
  metrics.watchSockets(() => realtime.sessions.size);
  return {
    config,
    database,
    get db() {
      if (!sqlite)
        throw new Error("the SQLite handle is not available: DATABASE_URL puts the data in PostgreSQL");
      return sqlite;
    },
    sqlite,
    sql,
    log,
    metrics,
    queue,
    users,
    auth,
    jobs,
    health,
    idempotency: new IdempotencyService(sql, {
      waitMs: config.IDEMPOTENCY_WAIT_MS,
      leaseMs: config.IDEMPOTENCY_LEASE_MS,
      workerId: queue.workerId,
      now: opts.now,
    }),
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
    instant: new InstantService({
      sql,
      queue,
      recipes,
      credits,
      backlog,
      assets,
      networked: database.backend === "postgres",
      now: opts.now,
    }),
    instances: new InstanceRegistry(sql),
  };
}
