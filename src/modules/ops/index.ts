import { Elysia } from "elysia";
import type { Config } from "../../config";
import type { InstanceRegistry } from "../../db/pg/instances";
import type { Queue } from "../../queue";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { routeDoc } from "../docs/model";
import type { GenerateService } from "../generate/service";
import { HealthReport, Liveness } from "./model";
import type { HealthService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  config: Config;
  generate: Pick<GenerateService, "admission">;
  health: HealthService;
  instances: Pick<InstanceRegistry, "live">;
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
      response: { 200: HealthReport, 503: HealthReport },
      detail: routeDoc({
        tags: ["ops"],
        summary: "Readiness: db writable, workers running, storage, render (503 when not)",
        errors: { 503: "a readiness check failed (the body names it)" },
      }),
    })
    .get("/health/ready", readiness, {
      response: { 200: HealthReport, 503: HealthReport },
      detail: routeDoc({
        tags: ["ops"],
        summary: "Readiness (the same report as /api/health, for probes that want the name)",
        errors: { 503: "a readiness check failed (the body names it)" },
      }),
    })
    .get("/health/live", () => ({ ok: true }), {
      response: { 200: Liveness },
      detail: routeDoc({ tags: ["ops"], summary: "Liveness", responseExample: { ok: true } }),
    })
    .get(
      "/queue/status",
      async () => {
        const { queue } = ctx;
        return {
          workerId: queue.workerId,
          running: queue.running,
          instances: await ctx.instances.live(Date.now()),
          slots: { total: ctx.config.WORKER_CONCURRENCY, free: queue.freeSlots },
          active: queue.active(),
          debounced: await ctx.queue.debounced(),
          counts: await ctx.queue.stats(),
          backpressure: await ctx.generate.admission.usage(),
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
