import type { Config } from "./config";
import type { Db } from "./db/client";
import type { OpenedDatabase } from "./db/open";
import type { InstanceRegistry } from "./db/pg/instances";
import type { Sql } from "./db/sql";
import type { Logger } from "./log";
import type { AuthService } from "./modules/auth/service";
import type { BacklogService } from "./modules/backlog/service";
import type { CardService } from "./modules/cards/service";
import type { CreditService } from "./modules/credits/service";
import type { AssetService } from "./modules/generate/assets";
import type { GenerateService } from "./modules/generate/service";
import type { IdempotencyService } from "./modules/idempotency/service";
import type { InstantService } from "./modules/instant/service";
import type { JobService } from "./modules/jobs/service";
import type { Metrics } from "./modules/metrics/service";
import type { HealthService } from "./modules/ops/service";
import type { RealtimeService } from "./modules/realtime/service";
import type { RecipeService } from "./modules/recipes/service";
import type { UserService } from "./modules/users/service";
import type { WebhookService } from "./modules/webhooks/service";
import type { ProviderRegistry } from "./providers/registry";
import type { Queue } from "./queue";
import type { LazyRenderer } from "./render/lazy";
import type { Storage } from "./storage";

/**
 * Every service, built once by createServices (services.ts) and handed to the app and the CLI (no hidden
 * globals). Modules and CLI commands do not import this type: each declares the services it uses
 * (`type Deps = { auth: AuthService; jobs: JobService }`), which an AppContext satisfies.
 */
export type AppContext = {
  config: Config;
  /** The database the services are built on (src/db/open.ts): a SQLite file, or PostgreSQL. */
  database: OpenedDatabase;
  /**
   * The raw SQLite connection; throws on PostgreSQL. A convenience for tests and SQLite-only scripts: code
   * of the server reads `sqlite` (null on PostgreSQL) instead, so it never meets the throw.
   */
  db: Db;
  sqlite: Db | null;
  /** The async client every repository is written against. */
  sql: Sql;
  log: Logger;
  queue: Queue;
  users: UserService;
  auth: AuthService;
  jobs: JobService;
  health: HealthService;
  idempotency: IdempotencyService;
  storage: Storage;
  providers: ProviderRegistry;
  assets: AssetService;
  cards: CardService;
  renderer: LazyRenderer;
  generate: GenerateService;
  realtime: RealtimeService;
  webhooks: WebhookService;
  metrics: Metrics;
  credits: CreditService;
  recipes: RecipeService;
  backlog: BacklogService;
  instant: InstantService;
  /** The Easel processes sharing this database (one on SQLite; the cluster on PostgreSQL). */
  instances: InstanceRegistry;
};
