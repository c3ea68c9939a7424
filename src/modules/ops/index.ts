import { Elysia } from "elysia";
import type { Config } from "../../config";
import type { Queue } from "../../queue";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import type { GenerateService } from "../generate/service";
import type { HealthService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  config: Config;
  generate: Pick<GenerateService, "admission">;
  health: HealthService;
  queue: Queue;
};

export const opsModule = (ctx: Deps) => {
  const readiness = async ({ set }: { set: { status?: number | string } }) => {
    const report = await ctx.health.readiness();
    if (!report.ok) set.status = 503;
    return report;
  };
  return new Elysia({ prefix: "/api", name: "ops" })
    .use(authPlugin(ctx.auth))
    .get("/health", readiness, {
      detail: {
        tags: ["ops"],
        summary: "Readiness: db writable, workers running, storage, render (503 when not)",
      },
    })
    .get("/health/ready", readiness, {
      detail: {
        tags: ["ops"],
        summary: "Readiness (the same report as /api/health, for probes that want the name)",
      },
    })
    .get("/health/live", () => ({ ok: true }), { detail: { tags: ["ops"], summary: "Liveness" } })
    .get(
      "/queue/status",
      () => {
        const pool = ctx.queue.pool;
        return {
          workerId: pool.workerId,
          running: pool.running,
          slots: { total: ctx.config.WORKER_CONCURRENCY, free: pool.freeSlots },
          active: pool.snapshot(),
          debounced: ctx.queue.store.debounced(),
          counts: ctx.queue.stats(),
          backpressure: ctx.generate.admission.usage(),
        };
      },
      {
        auth: ["admin"],
        detail: {
          tags: ["ops"],
          summary:
            "Live debug view: active jobs with progress, debounced keys, free slots, queue limits and their use",
        },
      },
    );
};
