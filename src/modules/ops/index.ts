import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { authPlugin } from "../auth/plugin";

export const opsModule = (ctx: AppContext) =>
  new Elysia({ prefix: "/api", name: "ops" })
    .use(authPlugin(ctx.auth))
    .get(
      "/health",
      async ({ set }) => {
        const report = await ctx.health.readiness();
        if (!report.ok) set.status = 503;
        return report;
      },
      {
        detail: {
          tags: ["ops"],
          summary: "Readiness: db writable, workers running, storage, render (503 when not)",
        },
      },
    )
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
