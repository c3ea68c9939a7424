/**
 * The backlog's failure budget, through the real engine: backlog generations that keep failing pause their
 * recipe's top-ups (visible in GET /api/recipes/:id/backlog) instead of being retried forever; after the
 * cooldown the backlog tries again, and a success resets the count.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { z } from "zod";
import type { BacklogView as BacklogSchema } from "../../src/modules/backlog/model";
import { createRecipe, expectStatus } from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type BacklogView = z.infer<typeof BacklogSchema>;

const COOLDOWN_MS = 1500;

describe("backlog failure budget", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: {
        ITEM_MAX_ATTEMPTS: "1",
        JOB_MAX_ATTEMPTS: "1",
        BACKLOG_FAILURE_LIMIT: "3",
        BACKLOG_FAILURE_COOLDOWN_MS: String(COOLDOWN_MS),
        BACKLOG_MAX_CONCURRENT: "3",
        BACKLOG_CRON: "0 0 1 1 *",
      },
    });
    await createRecipe(server.api, { id: "broken", promptTemplate: "[fail] a {{color}} fox", backlogMin: 3 });
  });
  afterAll(() => server.close());

  const view = async () => expectStatus<BacklogView>(await server.api("/api/recipes/broken/backlog"), 200);
  const settled = () =>
    waitFor(async () => ((await view()).inFlight === 0 ? view() : null), {
      timeoutMs: 10_000,
      what: "no jobs in flight",
    });

  test("repeated failures pause the recipe's top-ups; after the cooldown a success resets the budget", async () => {
    expect((await server.ctx.backlog.maintain({ recipeId: "broken" })).enqueued).toBe(3);
    const paused = await settled();
    expect(paused).toMatchObject({ ready: 0, deficit: 3 });
    expect(paused.failures).toMatchObject({ consecutiveFailures: 3, limit: 3, paused: true });
    expect(paused.failures.lastError?.code).toBe("provider_unavailable");
    expect(paused.failures.pausedUntil).toBeGreaterThan(Date.now());

    const skipped = await server.ctx.backlog.maintain({ recipeId: "broken" });
    expect(skipped.recipes[0]).toMatchObject({ enqueued: 0, skipped: "paused" });

    await expectStatus(
      await server.api("/api/recipes/broken", {
        method: "PATCH",
        json: { promptTemplate: "a {{color}} fox" },
      }),
      200,
    );
    expect((await server.ctx.backlog.maintain({ recipeId: "broken" })).enqueued).toBe(0);
    await Bun.sleep(COOLDOWN_MS + 50);
    expect((await server.ctx.backlog.maintain({ recipeId: "broken" })).enqueued).toBe(3);
    const healthy = await settled();
    expect(healthy).toMatchObject({ ready: 3, deficit: 0 });
    expect(healthy.failures).toMatchObject({ consecutiveFailures: 0, paused: false, pausedUntil: null });
  });
});
