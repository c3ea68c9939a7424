/**
 * The requests `bun run bench history --plans` reviews: every summary and list the API, the dashboard and
 * metrics serve. `as` says who asks: the admin key, the built data's app (its own key), the dashboard's
 * signed-in admin, or nobody; `:id` stands for the newest job.
 */
export const REVIEWED_REQUESTS: [label: string, path: string, as: "admin" | "app" | "cookie" | "none"][] = [
  ["GET /api/jobs/stats (admin)", "/api/jobs/stats", "admin"],
  ["GET /api/jobs/stats (app)", "/api/jobs/stats", "app"],
  ["GET /api/queue/status", "/api/queue/status", "admin"],
  ["GET /metrics", "/metrics", "none"],
  ["GET /api/health", "/api/health", "none"],
  ["GET /api/jobs?limit=50", "/api/jobs?limit=50", "admin"],
  ["GET /api/jobs?status=failed", "/api/jobs?status=failed", "admin"],
  ["GET /api/jobs?status=cancelled", "/api/jobs?status=cancelled", "admin"],
  ["GET /api/jobs?status=active", "/api/jobs?status=active", "admin"],
  ["GET /api/jobs?status=waiting", "/api/jobs?status=waiting", "admin"],
  ["GET /api/jobs?status=delayed", "/api/jobs?status=delayed", "admin"],
  ["GET /api/jobs?type=webhook.deliver", "/api/jobs?type=webhook.deliver", "admin"],
  ["GET /api/jobs?type=card.render", "/api/jobs?type=card.render", "admin"],
  [
    "GET /api/jobs?status=partial&type=webhook.deliver",
    "/api/jobs?status=partial&type=webhook.deliver",
    "admin",
  ],
  ["GET /api/jobs?recipeId=fox", "/api/jobs?recipeId=fox", "admin"],
  ["GET /api/jobs (app)", "/api/jobs", "app"],
  ["GET /api/jobs?status=failed (app)", "/api/jobs?status=failed", "app"],
  ["GET /api/jobs?userId=user-5 (admin)", "/api/jobs?userId=user-5", "admin"],
  ["GET /api/jobs?userId=user-5&status=failed (admin)", "/api/jobs?userId=user-5&status=failed", "admin"],
  ["GET /api/jobs/:id", "/api/jobs/:id", "admin"],
  ["GET /api/jobs/:id/status", "/api/jobs/:id/status", "admin"],
  ["GET /api/cards", "/api/cards", "admin"],
  ["GET /api/webhooks/deliveries", "/api/webhooks/deliveries", "admin"],
  ["GET /api/credits", "/api/credits", "app"],
  ["GET /api/recipes", "/api/recipes", "admin"],
  ["GET /dashboard/fragments/overview (admin)", "/dashboard/fragments/overview", "cookie"],
  ["GET /dashboard/jobs?status=failed", "/dashboard/jobs?status=failed", "cookie"],
  ["GET /dashboard/backlog", "/dashboard/backlog", "cookie"],
  ["GET /dashboard/webhooks", "/dashboard/webhooks", "cookie"],
];

type App = { handle(request: Request): Promise<Response> };
type Keys = { createKey(userId: string, name: string): Promise<{ key: string }> };

/**
 * Sends every reviewed request to `app` in process (`Elysia#handle`) as its caller: the admin key, a key of the
 * built data's app, or the dashboard's signed-in admin. `onRequest` is told each label before its request, so
 * the caller can file the statements it sees under it. An answer of 400 or more is reported on stderr, but for
 * /api/health's 503 (no worker pool runs here; it runs its checks all the same).
 */
export async function sendReviewedRequests(
  app: App,
  auth: Keys,
  opts: { adminKey: string; someJob: string; onRequest: (label: string) => void },
): Promise<void> {
  const base = "http://localhost";
  const admin = { headers: { authorization: `Bearer ${opts.adminKey}` } };
  // The built data's app (1,000 end users) signs in with a key of its own.
  const asApp = { headers: { authorization: `Bearer ${(await auth.createKey("app", "plans")).key}` } };
  const login = await app.handle(
    new Request(`${base}/dashboard/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `key=${opts.adminKey}`,
    }),
  );
  const cookie = { headers: { cookie: login.headers.get("set-cookie")!.split(";")[0]! } };
  for (const [label, path, as] of REVIEWED_REQUESTS) {
    opts.onRequest(label);
    const init = as === "admin" ? admin : as === "app" ? asApp : as === "cookie" ? cookie : {};
    const res = await app.handle(new Request(`${base}${path.replace(":id", opts.someJob)}`, init));
    await res.arrayBuffer();
    const expected = path === "/api/health" && res.status === 503;
    if (res.status >= 400 && !expected) process.stderr.write(`${label}: HTTP ${res.status}\n`);
  }
}
