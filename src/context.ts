import type { Config } from "./config";
import type { Db } from "./db/client";
import type { Logger } from "./log";
import type { AuthService } from "./modules/auth/service";
import type { IdempotencyService } from "./modules/idempotency/service";
import type { JobService } from "./modules/jobs/service";
import type { HealthService } from "./modules/ops/service";
import type { UserService } from "./modules/users/service";
import type { Queue } from "./queue";

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
};
