import type { Config } from "./config";
import type { Db } from "./db/client";
import type { Logger } from "./log";
import type { AuthService } from "./modules/auth/service";
import type { CardService } from "./modules/cards/service";
import type { AssetService } from "./modules/generate/assets";
import type { GenerateService } from "./modules/generate/service";
import type { IdempotencyService } from "./modules/idempotency/service";
import type { JobService } from "./modules/jobs/service";
import type { HealthService } from "./modules/ops/service";
import type { RealtimeService } from "./modules/realtime/service";
import type { UserService } from "./modules/users/service";
import type { WebhookService } from "./modules/webhooks/service";
import type { ProviderRegistry } from "./providers/registry";
import type { Queue } from "./queue";
import type { LazyRenderer } from "./runtime";
import type { Storage } from "./storage";

/** Everything the HTTP modules need, wired once in runtime.ts and passed in (no hidden globals). */
export type AppContext = {
  config: Config;
  db: Db;
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
};
