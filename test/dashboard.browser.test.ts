/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core): sign-in, live job progress
 * without reloads, retry, backlog top-up, card images, webhooks, CSRF refusals and sign-out. Screenshots of
 * each page go to test-artifacts/dashboard/ for a person to look at.
 *
 * Each test opens its own browser context (its own cookies) and signs in itself, so one slow or failed test
 * cannot take the others down; waits are generous (a loaded machine makes the file slower, never red).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { z } from "zod";
import { defineJob, UnrecoverableError } from "../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "./helpers";

const CHROMIUM = "/usr/bin/chromium";
/** How long any one wait in the browser may take: far more than it needs on an idle machine. */
const WAIT = 60_000;
/** Per test: several waits, a sign-in and screenshots, on a machine other test files are loading. */
const TEST_TIMEOUT = 180_000;
const ARTIFACTS = join(import.meta.dir, "..", "test-artifacts", "dashboard");

/** A job that reports progress in steps, so a progress bar has something to show. */
const slowJob = defineJob({
  type: "demo.slow",
  input: z.object({ steps: z.number().int().min(1).max(100), stepMs: z.number().int().min(1).max(1000) }),
  run: async ({ input, progress, signal }) => {
    for (let i = 1; i <= input.steps; i++) {
      await Bun.sleep(input.stepMs);
      signal.throwIfAborted();
      progress((i / input.steps) * 100, `step ${i} of ${input.steps}`);
    }
    return { steps: input.steps };
  },
});

/** Fails until the test flips the switch, then succeeds: what a retry is for. */
let flakyFails = true;
const flakyJob = defineJob({
  type: "demo.flaky",
  input: z.object({}),
  maxAttempts: 1,
  run: async () => {
    if (flakyFails) throw new UnrecoverableError("the demo service said no", { code: "demo_refused" });
    return { ok: true };
  },
});

let server: TestServer;
let receiver: ReturnType<typeof Bun.serve>;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const ids = { generate: "", flaky: "", card: "" };

async function json<T>(res: Response): Promise<T> {
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const jobStatus = async (id: string) =>
  (await json<{ status: string }>(await server.api(`/api/jobs/${id}`))).status;

async function shot(name: string) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** A fresh context (no cookies) and page for one test; closed after it. */
async function openPage(): Promise<void> {
  context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  page = await context.newPage();
}

/** Signs in through the sign-in form, as a person would. */
async function signIn(): Promise<void> {
  await page.goto(`${server.url}/dashboard/login`);
  await page.getByLabel("API key").fill(ADMIN_KEY);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${server.url}/dashboard`);
}

async function signedInPage(): Promise<void> {
  await openPage();
  await signIn();
}

/** `naturalWidth` of an image once it has loaded (0 while loading or broken). */
const naturalWidth = (selector: string) =>
  page
    .locator(selector)
    .first()
    .evaluate((img) => {
      const i = img as unknown as { complete: boolean; naturalWidth: number };
      return i.complete ? i.naturalWidth : 0;
    });

/** The live value of a <progress> element (its attribute is only the initial value). */
const progressValue = (locator: ReturnType<Page["locator"]>) =>
  locator.evaluate((p) => (p as unknown as { value: number }).value);

/**
 * playwright-core's in-process client sometimes gets a page's WebSocket events (a frame, the socket's
 * creation) after it has dropped that page or socket on a navigation or close — a race in its message
 * hand-off that shows under Bun. Those events are only reported to listeners, and this test has none, so
 * they are dropped; every other message still fails loudly.
 */
const WS_EVENTS = new Set(["frameReceived", "frameSent", "socketError", "close", "webSocket"]);
function ignoreLateWebSocketEvents(owner: object): void {
  type Message = { method?: string; params?: { type?: string } };
  const connection = (owner as { _connection: { dispatch(m: Message): void } })._connection;
  const dispatch = connection.dispatch.bind(connection);
  connection.dispatch = (message) => {
    try {
      dispatch(message);
    } catch (err) {
      const late =
        /^Cannot find (parent )?object/.test((err as Error).message) &&
        (WS_EVENTS.has(message.method ?? "") ||
          (message.method === "__create__" && message.params?.type === "WebSocket"));
      if (!late) throw err;
    }
  };
}

describe.skipIf(!existsSync(CHROMIUM))("dashboard in a browser", () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    receiver = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => new Response(null, { status: 204 }),
    });
    server = await startTestServer({
      jobs: [slowJob, flakyJob],
      env: {
        RENDER_WORKERS: "1",
        ALLOW_PRIVATE_URLS: "true",
        // No scheduled top-ups, and the one a new recipe queues waits far past the test: the test fills the
        // backlog with the button.
        BACKLOG_CRON: "0 0 1 1 *",
        BACKLOG_TOPUP_DELAY_MS: "600000",
      },
    });
    await json(
      await server.api("/api/webhooks", {
        method: "POST",
        json: { url: `http://127.0.0.1:${receiver.port}/hooks`, events: ["job.completed", "job.failed"] },
      }),
    );
    await json(
      await server.api("/api/recipes", {
        method: "POST",
        json: {
          id: "fox",
          name: "Watercolour fox",
          promptTemplate: "a {{style}} fox in the snow",
          variables: [{ name: "style", type: "enum", options: [{ value: "watercolour" }, { value: "ink" }] }],
          backlogMin: 2,
        },
      }),
    );
    const card = await json<{ id: string }>(
      await server.api("/api/cards", {
        method: "POST",
        json: {
          template: "poll",
          data: {
            question: "Which fox should be our mascot?",
            creator: { name: "Ada", handle: "@ada" },
            options: [
              { label: "Watercolour", votes: 7 },
              { label: "Ink", votes: 4 },
            ],
          },
        },
      }),
    );
    ids.card = card.id;
    ids.generate = (
      await json<{ jobId: string }>(
        await server.api("/api/jobs/generate-image", {
          method: "POST",
          json: { prompt: "a watercolour fox", size: "512x512", n: 2 },
        }),
      )
    ).jobId;
    ids.flaky = (
      await json<{ id: string }>(
        await server.api("/api/jobs", { method: "POST", json: { type: "demo.flaky", input: {} } }),
      )
    ).id;
    await waitFor(
      async () =>
        (await jobStatus(ids.generate)) === "completed" && (await jobStatus(ids.flaky)) === "failed",
      { timeoutMs: WAIT, what: "the seed jobs to finish" },
    );

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: WAIT,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
      ],
    });
    ignoreLateWebSocketEvents(browser);
  }, TEST_TIMEOUT);

  afterEach(async () => {
    await context?.close();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    receiver?.stop(true);
  });

  test(
    "a wrong key is refused on the sign-in page",
    async () => {
      await openPage();
      await page.goto(`${server.url}/dashboard`);
      expect(new URL(page.url()).pathname).toBe("/dashboard/login");
      await shot("01-sign-in");
      await page.getByLabel("API key").fill("esk_not_a_real_key_000000000000");
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith("/dashboard/login") && r.request().method() === "POST"),
        page.getByRole("button", { name: "Sign in" }).click(),
      ]);
      expect(response.status()).toBe(401);
      // What the server answered, whatever the browser then shows: the page itself carries the alert.
      expect(await response.text()).toContain("not valid");
      const alert = await page
        .getByRole("alert")
        .textContent()
        .catch(async (err: Error) => {
          // Seen once in a full run (the alert never appeared within the wait): say what the page was then.
          throw new Error(`${err.message}\npage ${page.url()}: ${(await page.content()).slice(0, 800)}`);
        });
      expect(alert).toContain("not valid");
      expect((await context.cookies()).some((c) => c.name === "easel_session")).toBe(false);
    },
    TEST_TIMEOUT,
  );

  test(
    "signs in with the admin key; the overview shows the right counts and goes live",
    async () => {
      await openPage();
      await signIn();
      const cookie = (await context.cookies()).find((c) => c.name === "easel_session");
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/dashboard" });

      const stats = await json<Record<string, number> & { byType: Record<string, Record<string, number>> }>(
        await server.api("/api/jobs/stats"),
      );
      // The overview counts apps' jobs: Easel's own (card renders, deliveries, top-ups) are left out.
      const internal = (type: string) =>
        type.startsWith("card.") || type === "webhook.deliver" || type === "backlog.topup";
      const shown = (status: string) =>
        stats[status]! -
        Object.entries(stats.byType)
          .filter(([type]) => internal(type))
          .reduce((n, [, counts]) => n + (counts[status] ?? 0), 0);
      for (const status of ["waiting", "active", "completed", "failed", "cancelled"]) {
        await expect(page.locator(`[data-count="${status}"]`).textContent()).resolves.toBe(
          String(shown(status)),
        );
      }
      expect(stats.completed).toBeGreaterThanOrEqual(1);
      expect(stats.failed).toBe(1);
      await page.locator("[data-live-indicator].on").waitFor({ timeout: WAIT });
      await expect(page.getByRole("table").first().textContent()).resolves.toContain("placeholder");
      await shot("02-overview");
    },
    TEST_TIMEOUT,
  );

  test(
    "a job queued through the API appears in the Jobs table and its progress runs to completed, live",
    async () => {
      await signedInPage();
      await page.goto(`${server.url}/dashboard/jobs`);
      await page.locator("[data-live-indicator].on").waitFor({ timeout: WAIT });
      await page.evaluate("window.__sameDocument = true");
      const { id } = await json<{ id: string }>(
        await server.api("/api/jobs", {
          method: "POST",
          json: { type: "demo.slow", input: { steps: 16, stepMs: 250 } },
        }),
      );
      const row = page.locator(`tr[data-job-id="${id}"]`);
      await row.waitFor({ timeout: WAIT });
      // From here on only the WebSocket can move the bar: the periodic section refreshes are cut off.
      let refreshes = 0;
      await page.route("**/dashboard/fragments/**", (route) => {
        refreshes++;
        return route.abort();
      });
      const seen = new Set<number>();
      await waitFor(
        async () => {
          seen.add(
            Number(
              await row
                .locator("progress")
                .getAttribute("value")
                .catch(() => "0"),
            ),
          );
          seen.add((await row.locator("progress").evaluate("p => p.value")) as number);
          return [...seen].some((v) => v > 0 && v < 100);
        },
        { timeoutMs: WAIT, intervalMs: 50, what: "the progress bar to move" },
      );
      await shot("03-jobs-running");
      await row.locator('[data-status-badge]:text("completed")').waitFor({ timeout: WAIT });
      expect(await progressValue(row.locator("progress"))).toBe(100);
      expect(await page.evaluate("window.__sameDocument")).toBe(true);
      expect(refreshes).toBeGreaterThan(0); // the refreshes were really attempted, and refused
      await page.unroute("**/dashboard/fragments/**");
      await shot("04-jobs-completed");
    },
    TEST_TIMEOUT,
  );

  test(
    "the job page shows a failure, and its Retry button runs the job again",
    async () => {
      await signedInPage();
      await page.goto(`${server.url}/dashboard/jobs/${ids.flaky}`);
      await expect(page.locator(".job-head [data-status-badge]").textContent()).resolves.toBe("failed");
      await expect(page.getByRole("alert").first().textContent()).resolves.toContain("demo_refused");
      await shot("05-job-failed");
      flakyFails = false;
      await page.getByRole("button", { name: "Retry" }).click();
      await page.waitForURL(/done=retried/);
      await page.locator('.job-head [data-status-badge]:text("completed")').waitFor({ timeout: WAIT });
      expect(await jobStatus(ids.flaky)).toBe("completed");
      await shot("06-job-retried");
    },
    TEST_TIMEOUT,
  );

  test(
    "a generation's page shows its images",
    async () => {
      await signedInPage();
      await page.goto(`${server.url}/dashboard/jobs/${ids.generate}`);
      const thumbs = page.locator(".thumbs img");
      await expect(thumbs.count()).resolves.toBeGreaterThanOrEqual(2);
      await waitFor(async () => (await naturalWidth(".thumbs img")) > 0, {
        timeoutMs: WAIT,
        what: "a thumbnail to load",
      });
      await shot("07-job-images");
    },
    TEST_TIMEOUT,
  );

  test(
    "the backlog page shows a recipe's levels, and Top up now fills it",
    async () => {
      await signedInPage();
      await page.goto(`${server.url}/dashboard/backlog`);
      const row = page.locator('tr[data-recipe-id="fox"]');
      await expect(row.locator('[data-level="min"]').textContent()).resolves.toBe("2");
      await expect(row.locator('[data-level="ready"]').textContent()).resolves.toBe("0");
      await expect(row.locator('[data-level="in-flight"]').textContent()).resolves.toBe("0");
      await row.getByRole("button", { name: "Top up now" }).click();
      await page.waitForURL(/done=topped-up/);
      await waitFor(async () => (await row.locator('[data-level="ready"]').textContent()) === "2", {
        timeoutMs: WAIT,
        what: "the backlog to fill (live)",
      });
      await shot("08-backlog");
    },
    TEST_TIMEOUT,
  );

  test(
    "the cards page shows each card's current image",
    async () => {
      await signedInPage();
      await page.goto(`${server.url}/dashboard/cards`);
      const img = `[data-card-id="${ids.card}"] img`;
      await waitFor(async () => (await naturalWidth(img)) > 0, {
        timeoutMs: WAIT,
        what: "the card image to load",
      });
      expect(await naturalWidth(img)).toBe(1200);
      await shot("09-cards");
    },
    TEST_TIMEOUT,
  );

  test(
    "the webhooks page lists the endpoint and its deliveries with status codes",
    async () => {
      await signedInPage();
      await waitFor(
        async () =>
          (
            await json<{ deliveries: { status: string }[] }>(await server.api("/api/webhooks/deliveries"))
          ).deliveries.some((d) => d.status === "delivered"),
        { timeoutMs: WAIT, what: "a delivery" },
      );
      await page.goto(`${server.url}/dashboard/webhooks`);
      await expect(page.locator("body").textContent()).resolves.toContain(`127.0.0.1:${receiver.port}/hooks`);
      const delivered = page.locator("tr", { has: page.locator('[data-status-badge]:text-is("delivered")') });
      await expect(delivered.first().locator(".ok-text").textContent()).resolves.toBe("204");
      await shot("10-webhooks");
    },
    TEST_TIMEOUT,
  );

  test(
    "reads well on a phone and in dark mode",
    async () => {
      await signedInPage();
      await page.setViewportSize({ width: 390, height: 844 });
      await page.goto(`${server.url}/dashboard`);
      await shot("11-overview-phone");
      await page.emulateMedia({ colorScheme: "dark" });
      await page.goto(`${server.url}/dashboard/jobs`);
      await shot("12-jobs-phone-dark");
      await page.setViewportSize({ width: 1360, height: 900 });
      await page.goto(`${server.url}/dashboard/jobs/${ids.generate}`);
      await shot("13-job-dark");
      await page.emulateMedia({ colorScheme: "light" });
    },
    TEST_TIMEOUT,
  );

  test(
    "refuses state changes without the CSRF token or from another origin (403)",
    async () => {
      await signedInPage();
      const session = (await context.cookies()).find((c) => c.name === "easel_session");
      const cookie = `easel_session=${session?.value}`;
      const retry = `${server.url}/dashboard/jobs/${ids.flaky}/retry`;
      const form = { "content-type": "application/x-www-form-urlencoded" };
      const noToken = await fetch(retry, {
        method: "POST",
        headers: { ...form, cookie },
        body: "",
        redirect: "manual",
      });
      expect(noToken.status).toBe(403);
      const csrf = await page.locator("body").getAttribute("data-csrf");
      const crossSite = await fetch(retry, {
        method: "POST",
        headers: { ...form, cookie, origin: "https://evil.example" },
        body: `_csrf=${csrf}`,
        redirect: "manual",
      });
      expect(crossSite.status).toBe(403);
      // The page's own origin without the token is refused too.
      const fromPage = await page.evaluate(
        `fetch(${JSON.stringify(retry)}, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "" }).then((r) => r.status)`,
      );
      expect(fromPage).toBe(403);
      // A session cookie is not a bearer token for the API.
      expect((await server.api("/api/profile", { key: session?.value ?? "" })).status).toBe(401);
    },
    TEST_TIMEOUT,
  );

  test(
    "the API reference at /docs renders from local files",
    async () => {
      await signedInPage();
      const external: string[] = [];
      page.on("request", (r) => {
        if (!r.url().startsWith(server.url)) external.push(r.url());
      });
      await page.goto(`${server.url}/docs`);
      await page.locator(".swagger-ui .opblock").first().waitFor({ timeout: WAIT });
      await expect(page.locator(".swagger-ui .info .title").textContent()).resolves.toContain("Easel API");
      expect(external).toEqual([]);
      await shot("14-api-reference");
    },
    TEST_TIMEOUT,
  );

  test(
    "the keys page creates a key shown once, rotates it and revokes it",
    async () => {
      await signedInPage();
      await page.goto(`${server.url}/dashboard/keys`);
      await expect(page.locator("tr[data-key-id]").first().textContent()).resolves.toContain("ADMIN_KEY");
      await page.locator("#k-name").fill("deploy bot");
      await page.getByLabel("Expires after").selectOption({ label: "30 days" });
      await page.getByRole("button", { name: "Create key" }).click();
      const shown = page.locator("[data-new-key]");
      await shown.waitFor();
      const first = await shown.inputValue();
      expect(first).toStartWith("esk_");
      expect((await server.api("/api/profile", { key: first })).status).toBe(200);
      await shot("15-key-created");

      await page.getByRole("button", { name: "Rotate deploy bot" }).first().click();
      await page.getByRole("heading", { name: /Key rotated/ }).waitFor();
      const second = await page.locator("[data-new-key]").inputValue();
      expect(second).not.toBe(first);
      expect((await server.api("/api/profile", { key: first })).status).toBe(401);
      expect((await server.api("/api/profile", { key: second })).status).toBe(200);

      await page.getByRole("button", { name: "Revoke deploy bot" }).click();
      await page.waitForURL(`${server.url}/dashboard/keys?done=revoked`);
      expect((await server.api("/api/profile", { key: second })).status).toBe(401);
      expect(await page.locator('tr[data-status="revoked"]').count()).toBe(2);
      expect(await page.content()).not.toContain(second);
      await shot("16-keys");
    },
    TEST_TIMEOUT,
  );

  test(
    "signs out: the session ends and the cookie no longer works",
    async () => {
      await signedInPage();
      const before = (await context.cookies()).find((c) => c.name === "easel_session")?.value;
      await page.goto(`${server.url}/dashboard`);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(`${server.url}/dashboard/login`);
      expect((await context.cookies()).some((c) => c.name === "easel_session")).toBe(false);
      await page.goto(`${server.url}/dashboard/jobs`);
      expect(new URL(page.url()).pathname).toBe("/dashboard/login");
      const replay = await fetch(`${server.url}/dashboard`, {
        headers: { cookie: `easel_session=${before}` },
        redirect: "manual",
      });
      expect(replay.status).toBe(303);
      expect(replay.headers.get("location")).toBe("/dashboard/login");
    },
    TEST_TIMEOUT,
  );
});
