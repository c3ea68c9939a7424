import { join } from "node:path";
import { Elysia } from "elysia";
import type { z } from "zod";
import { ApiError, notFound } from "../../errors";
import { type Principal, persistedSecret } from "../auth/service";
import { type RouteDoc, routeDoc } from "../docs/model";
import { socketHandlers } from "../realtime";
import type { RealtimeService } from "../realtime/service";
import { FAVICON_SVG, faviconIco } from "./favicon";
import { htmlResponse, redirect } from "./http";
import {
  FileParams,
  FormBody,
  FragmentParams,
  IdParams,
  JobsQuery,
  jobFilters,
  KeyForm,
  KeysQuery,
  NoticeQuery,
  SignInBody,
} from "./model";
import { canUseDashboard, type DashboardDeps, DashboardService } from "./service";
import { DashboardSessions, isSameOrigin, type Session, sessionCookie } from "./session";
import { backlogPage, backlogTable } from "./views/backlog";
import { cardGrid, cardsPage } from "./views/cards";
import { jobBody, jobPage } from "./views/job";
import { jobRows, jobsPage } from "./views/jobs";
import { type KeysData, keysPage } from "./views/keys";
import { errorPage, layout, signInPage, type Viewer } from "./views/layout";
import { type OverviewData, overviewBody, overviewPage } from "./views/overview";
import { webhooksBody, webhooksPage } from "./views/webhooks";

/** What this file needs from the services: the dashboard service's, and realtime for `/dashboard/ws`. */
type Deps = DashboardDeps & { realtime: RealtimeService };

type SignedIn = Viewer & { session: Session; principal: Principal };

const ASSETS: Record<string, string> = {
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

/** Fixed notices for `?done=` / `?error=` after a form post (never echoing text from the URL). */
const NOTICES: Record<string, string> = {
  retried: "The job was queued again.",
  cancelled: "The job was cancelled.",
  "topped-up": "Top-up queued: the new generations show as in flight.",
  full: "Nothing to do: the backlog is already at its minimum (counting what is in flight).",
  paused: "Top-ups of this recipe are paused after repeated failures.",
  concurrency_cap: "Backlog work is at its concurrency cap (BACKLOG_MAX_CONCURRENT); the rest follows later.",
  no_inputs: "No valid inputs could be drawn from the recipe's variables.",
  provider_unavailable: "The recipe's provider is not configured.",
  inactive: "The recipe is inactive.",
  not_retryable: "Only failed, partial or cancelled jobs can be retried.",
  not_cancellable: "The job has already finished.",
  dedupe_conflict: "A newer job with the same dedupe key is queued.",
  revoked: "The key was revoked: its next request gets 401.",
  not_found: "No such user or key, or not one you can manage.",
  key_revoked: "That key is already revoked; create a new one instead.",
  managed_key: "This key is the ADMIN_KEY variable's: change the variable to replace it.",
  reserved_name: "ADMIN_KEY is the name of the key the ADMIN_KEY variable sets; choose another.",
};

const PAGE_SIZE = 25;

const cookieAuth = [{ dashboardSession: [] }];
type PageDoc = Omit<RouteDoc, "tags" | "summary" | "security">;
const doc = (summary: string, extra: PageDoc = {}, security: Record<string, string[]>[] = cookieAuth) =>
  routeDoc({ tags: ["dashboard"], summary, security, ...extra });
const PAGE: PageDoc = {
  responseType: "text/html",
  responseDescription: "The page (303 to sign-in without a session)",
};
const FRAGMENT: PageDoc = { responseType: "text/html", responseDescription: "An HTML fragment" };
/** A form post: answered with a 303 redirect. */
const form = (description: string): PageDoc => ({
  status: 303,
  bodyType: "application/x-www-form-urlencoded",
  responseDescription: description,
  errors: { 401: "no dashboard session", 403: "cross-site request or missing/invalid CSRF token" },
});
/** A form post answered with the keys page itself, which shows a new key this once. */
const KEY_SHOWN: PageDoc = {
  ...form("The keys page, showing the new key once"),
  status: 200,
  responseType: "text/html",
};

/** Dashboard paths anyone may reach: signing in and the icons. */
const OPEN_PATHS = new Set(["/dashboard/login", "/favicon.ico", "/favicon.svg"]);

/**
 * `/dashboard`: server-rendered pages for admins (everything) and apps (their users), signed in with a key
 * and kept in a session cookie. Live parts refresh from `/dashboard/fragments/*`; progress streams over
 * `/dashboard/ws`, which speaks the `/ws` protocol but authenticates with the session cookie (an admin's
 * client token could only follow the admin's own jobs).
 */
export const dashboardModule = (ctx: Deps) => {
  const sessions = new DashboardSessions({
    sql: ctx.sql,
    // The same base secret as client tokens; sessions sign with a key derived from it for their own purpose.
    secret: ctx.config.JWT_SECRET ?? persistedSecret(ctx.config.dataDir),
    ttlSeconds: ctx.config.DASHBOARD_SESSION_TTL_S,
    secure: ctx.config.publicUrl.startsWith("https:"),
  });
  const service = new DashboardService(ctx);
  const assetDir = join(import.meta.dir, "assets");

  async function signedIn(request: Request): Promise<SignedIn | null> {
    const session = await sessions.verify(sessionCookie(request.headers.get("cookie")));
    const principal = session && (await service.principal(session));
    if (!session || !principal) return null;
    return { session, principal, user: principal.user, csrf: await sessions.csrfToken(session) };
  }

  /** State changes need a session, no cross-site origin, and the session's CSRF token. */
  async function writer(
    request: Request,
    viewer: SignedIn | null,
    token: string | undefined,
  ): Promise<SignedIn> {
    if (!viewer) throw new ApiError(401, "unauthorized", "sign in to the dashboard first");
    const csrf = token ?? request.headers.get("x-csrf-token") ?? undefined;
    if (!isSameOrigin(request, ctx.config.publicUrl) || !(await sessions.checkCsrf(viewer.session, csrf))) {
      throw new ApiError(
        403,
        "csrf_failed",
        "cross-site request refused: missing or invalid CSRF token or origin",
      );
    }
    return viewer;
  }

  const overview = async (p: Principal): Promise<OverviewData> => {
    const active = await service.activeJobs(p);
    return {
      counts: await service.counts(p),
      throughput: await service.throughput(p),
      active,
      owners: await service.owners(active.map((j) => j.ownerId)),
      providers: service.providers(),
      workers: p.user.role === "admin" ? service.workers() : null,
      instances: p.user.role === "admin" ? await service.instances() : null,
    };
  };
  const notice = (q: z.infer<typeof NoticeQuery>) => NOTICES[q.done ?? q.error ?? ""];
  const isAdmin = (v: SignedIn) => v.user.role === "admin";

  /** The keys page for `userRef` (the viewer when absent); an unknown or foreign user shows the viewer's, 404. */
  const keysResponse = async (
    request: Request,
    viewer: SignedIn,
    o: Pick<KeysData, "userRef" | "notice" | "created">,
  ): Promise<Response> => {
    let owner = viewer.user;
    let status = 200;
    let { userRef, notice: text } = o;
    try {
      owner = await ctx.auth.keyOwner(viewer.principal, userRef, { create: false });
    } catch (err) {
      if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 403)) throw err;
      [status, userRef, text] = [404, undefined, NOTICES.not_found];
    }
    const keys = (await ctx.auth.keys.listOf(owner.id)).map((k) => ctx.auth.keys.view(k));
    const body = keysPage({
      ...o,
      owner,
      userRef,
      notice: text,
      keys,
      csrf: viewer.csrf,
      canChooseUser: true,
    });
    return htmlResponse(request, layout({ title: "API keys", page: "keys", viewer }, body), status);
  };
  /** Where a key action returns to: the page of the key's owner. */
  const keysPageOf = (viewer: SignedIn, userId: string) =>
    userId === viewer.user.id ? "/dashboard/keys" : `/dashboard/keys?user=${encodeURIComponent(userId)}`;

  /** Who is signed in, found before validation (transform) and handed to the handler (resolve). */
  const viewers = new WeakMap<Request, SignedIn | null>();
  return (
    new Elysia({ name: "dashboard" })
      // Before any query or form is validated: an anonymous caller is sent to sign in (pages) or refused
      // (actions, fragments), never answered with a validation error that describes the form.
      .onTransform(async ({ request, path }) => {
        if (OPEN_PATHS.has(path) || path.startsWith("/dashboard/assets/") || path === "/dashboard/ws") return;
        const viewer = await signedIn(request);
        viewers.set(request, viewer);
        if (viewer) return;
        if (request.method === "GET" && !path.startsWith("/dashboard/fragments/")) {
          throw new ApiError(303, "sign_in_required", "sign in to the dashboard first", {
            headers: { location: "/dashboard/login", "cache-control": "no-store" },
          });
        }
        throw new ApiError(401, "unauthorized", "sign in to the dashboard first");
      })
      .resolve(async ({ request }) => ({
        viewer: viewers.has(request) ? (viewers.get(request) ?? null) : await signedIn(request),
        sameOrigin: isSameOrigin(request, ctx.config.publicUrl),
      }))
      .get(
        "/dashboard/login",
        async ({ request, viewer }) =>
          viewer ? redirect("/dashboard") : htmlResponse(request, signInPage({})),
        { detail: doc("Sign-in page", { ...PAGE, responseDescription: "The sign-in form" }, []) },
      )
      .post(
        "/dashboard/login",
        async ({ request, body }) => {
          if (!isSameOrigin(request, ctx.config.publicUrl)) {
            return htmlResponse(request, signInPage({ error: "Cross-site sign-in refused." }), 403);
          }
          const principal = await ctx.auth.authenticateKey(body.key);
          if (!principal?.keyId) {
            return htmlResponse(
              request,
              signInPage({ error: "That key is not valid, or it was revoked." }),
              401,
            );
          }
          if (!canUseDashboard(principal.user)) {
            return htmlResponse(
              request,
              signInPage({ error: "Only admin and app keys can sign in to the dashboard." }),
              403,
            );
          }
          const { token } = await sessions.issue(principal.user.id, principal.keyId);
          return redirect("/dashboard", { "set-cookie": sessions.cookie(token) });
        },
        {
          body: SignInBody,
          detail: doc(
            "Sign in with an admin or app key (sets the session cookie)",
            {
              status: 303,
              bodyType: "application/x-www-form-urlencoded",
              responseDescription: "Signed in: sets the httpOnly session cookie and redirects to /dashboard",
              errors: {
                401: "unknown or revoked key (the form again, with a message)",
                403: "not an admin or app key, or a cross-site post",
              },
            },
            [],
          ),
        },
      )
      .post(
        "/dashboard/logout",
        async ({ request, viewer, body }) => {
          const v = await writer(request, viewer, body?._csrf);
          await sessions.revoke(v.session);
          return redirect("/dashboard/login", { "set-cookie": sessions.clearCookie() });
        },
        {
          body: FormBody,
          detail: doc(
            "Sign out (ends the session)",
            form("Signed out: clears the cookie and redirects to the sign-in page"),
          ),
        },
      )
      .get(
        "/dashboard",
        async ({ request, viewer }) => {
          if (!viewer) return redirect("/dashboard/login");
          return htmlResponse(
            request,
            layout(
              { title: "Overview", page: "overview", viewer, live: true },
              overviewPage(await overview(viewer.principal)),
            ),
          );
        },
        { detail: doc("Overview: counts, throughput, active jobs, providers", PAGE) },
      )
      .get(
        "/dashboard/jobs",
        async ({ request, viewer, query }) => {
          if (!viewer) return redirect("/dashboard/login");
          if (query.q) {
            if (await service.job(viewer.principal, query.q)) return redirect(`/dashboard/jobs/${query.q}`);
          }
          const filters = jobFilters(query);
          const page = await service.jobs(viewer.principal, { ...filters, limit: PAGE_SIZE });
          const body = jobsPage({
            ...page,
            filters,
            types: service.jobTypes(),
            notFound: query.q,
          });
          return htmlResponse(request, layout({ title: "Jobs", page: "jobs", viewer, live: true }, body));
        },
        { query: JobsQuery, detail: doc("Jobs: filter by status, type, user, recipe; search by id", PAGE) },
      )
      .get(
        "/dashboard/jobs/:id",
        async ({ request, viewer, params, query }) => {
          if (!viewer) return redirect("/dashboard/login");
          const found = await service.job(viewer.principal, params.id);
          if (!found) {
            return htmlResponse(
              request,
              errorPage(viewer, "Job not found", "No such job, or not one you can see."),
              404,
            );
          }
          const body = jobPage(found.job, found.owner, viewer.csrf, notice(query));
          return htmlResponse(request, layout({ title: "Job", page: "jobs", viewer, live: true }, body));
        },
        {
          params: IdParams,
          query: NoticeQuery,
          detail: doc("A job: input, items, images, timeline, actions", PAGE),
        },
      )
      .post(
        "/dashboard/jobs/:id/retry",
        async ({ request, viewer, params, body }) => {
          const v = await writer(request, viewer, body?._csrf);
          return control(
            () => ctx.jobs.retry(v.principal, params.id),
            `/dashboard/jobs/${params.id}`,
            "retried",
          );
        },
        {
          params: IdParams,
          body: FormBody,
          detail: doc("Retry a failed, partial or cancelled job", form("Back to the job page with a notice")),
        },
      )
      .post(
        "/dashboard/jobs/:id/cancel",
        async ({ request, viewer, params, body }) => {
          const v = await writer(request, viewer, body?._csrf);
          return control(
            () => ctx.jobs.cancel(v.principal, params.id),
            `/dashboard/jobs/${params.id}`,
            "cancelled",
          );
        },
        {
          params: IdParams,
          body: FormBody,
          detail: doc("Cancel a queued or active job", form("Back to the job page with a notice")),
        },
      )
      .get(
        "/dashboard/backlog",
        async ({ request, viewer, query }) => {
          if (!viewer) return redirect("/dashboard/login");
          if (!isAdmin(viewer)) {
            return htmlResponse(
              request,
              errorPage(viewer, "Backlog", "The backlog is shared by every app: admins only."),
              403,
            );
          }
          const body = backlogPage(await service.backlog(), { csrf: viewer.csrf, notice: notice(query) });
          return htmlResponse(
            request,
            layout({ title: "Backlog", page: "backlog", viewer, live: true }, body),
          );
        },
        { query: NoticeQuery, detail: doc("Backlog levels per recipe (admin)", PAGE) },
      )
      .post(
        "/dashboard/backlog/:id/top-up",
        async ({ request, viewer, params, body }) => {
          const v = await writer(request, viewer, body?._csrf);
          if (!isAdmin(v)) throw new ApiError(403, "forbidden", "requires role admin");
          const { skipped } = await service.topUp(params.id);
          return redirect(
            skipped ? `/dashboard/backlog?error=${skipped}` : "/dashboard/backlog?done=topped-up",
          );
        },
        {
          params: IdParams,
          body: FormBody,
          detail: doc(
            "Top a recipe's backlog up now (admin)",
            form("Back to the backlog page with a notice"),
          ),
        },
      )
      .get(
        "/dashboard/cards",
        async ({ request, viewer }) => {
          if (!viewer) return redirect("/dashboard/login");
          const { cards } = await service.cards(viewer.principal);
          return htmlResponse(
            request,
            layout({ title: "Cards", page: "cards", viewer, live: true }, cardsPage(cards)),
          );
        },
        { detail: doc("Live cards with their current image", PAGE) },
      )
      .get(
        "/dashboard/webhooks",
        async ({ request, viewer }) => {
          if (!viewer) return redirect("/dashboard/login");
          const body = webhooksPage(await service.webhooks(viewer.principal));
          return htmlResponse(
            request,
            layout({ title: "Webhooks", page: "webhooks", viewer, live: true }, body),
          );
        },
        { detail: doc("Webhook endpoints and recent deliveries", PAGE) },
      )
      .get(
        "/dashboard/keys",
        ({ request, viewer, query }) => {
          if (!viewer) return redirect("/dashboard/login");
          return keysResponse(request, viewer, { userRef: query.user, notice: notice(query) });
        },
        {
          query: KeysQuery,
          detail: doc("API keys of the viewer or a user: prefix, created, last used, expiry", PAGE),
        },
      )
      .post(
        "/dashboard/keys",
        async ({ request, viewer, body }) => {
          const v = await writer(request, viewer, body._csrf);
          const back = body.user
            ? `/dashboard/keys?user=${encodeURIComponent(body.user)}&`
            : "/dashboard/keys?";
          return keyAction(back, async () => {
            const owner = await ctx.auth.keyOwner(v.principal, body.user, { create: false });
            const { key, row } = await ctx.auth.keys.create(owner.id, body.name, {
              expiresInSeconds: body.expiresInSeconds,
            });
            const view = ctx.auth.keys.view(row);
            return keysResponse(request, v, {
              userRef: body.user,
              created: { key, view, rotatedFrom: null },
            });
          });
        },
        { body: KeyForm, detail: doc("Create a key; the answer shows it once", KEY_SHOWN) },
      )
      .post(
        "/dashboard/keys/:id/revoke",
        async ({ request, viewer, params, body }) => {
          const v = await writer(request, viewer, body?._csrf);
          return keyAction("/dashboard/keys?", async () => {
            const key = await ctx.auth.manageableKey(v.principal, params.id);
            await ctx.auth.keys.revoke(key.id);
            // Revoking the key this session signed in with ends the session: the page would only redirect.
            if (key.id === v.session.keyId) return redirect("/dashboard/login");
            const back = keysPageOf(v, key.userId);
            return redirect(`${back}${back.includes("?") ? "&" : "?"}done=revoked`);
          });
        },
        {
          params: IdParams,
          body: FormBody,
          detail: doc(
            "Revoke a key: its next request gets 401",
            form("Back to the keys page with a notice (to sign-in when it was the session's own key)"),
          ),
        },
      )
      .post(
        "/dashboard/keys/:id/rotate",
        async ({ request, viewer, params, body }) => {
          const v = await writer(request, viewer, body?._csrf);
          return keyAction("/dashboard/keys?", async () => {
            const old = await ctx.auth.manageableKey(v.principal, params.id);
            const { key, row, replaced } = await ctx.auth.keys.rotate(old.id);
            const userRef = old.userId === v.user.id ? undefined : old.userId;
            const created = { key, view: ctx.auth.keys.view(row), rotatedFrom: replaced.id };
            // Rotating the session's own key ends the session, but this answer is the only time the new key shows.
            const notice =
              old.id === v.session.keyId
                ? "You signed in with the old key: sign in again with the new one."
                : undefined;
            return keysResponse(request, v, { userRef, created, notice });
          });
        },
        {
          params: IdParams,
          body: FormBody,
          detail: doc("Rotate a key; the answer shows the new one once", KEY_SHOWN),
        },
      )
      .get(
        "/dashboard/fragments/:name",
        async ({ request, viewer, params, query }) => {
          if (!viewer) throw new ApiError(401, "unauthorized", "session expired");
          const p = viewer.principal;
          switch (params.name) {
            case "overview":
              return htmlResponse(request, overviewBody(await overview(p)));
            case "jobs": {
              const filters = JobsQuery.safeParse(query);
              if (!filters.success) throw new ApiError(422, "validation_failed", "invalid job filters");
              return htmlResponse(
                request,
                jobRows(await service.jobs(p, { ...jobFilters(filters.data), limit: PAGE_SIZE })),
              );
            }
            case "backlog":
              if (!isAdmin(viewer)) throw new ApiError(403, "forbidden", "requires role admin");
              return htmlResponse(request, backlogTable(await service.backlog(), { csrf: viewer.csrf }));
            case "cards":
              return htmlResponse(request, cardGrid((await service.cards(p)).cards));
            case "webhooks":
              return htmlResponse(request, webhooksBody(await service.webhooks(p)));
            default:
              throw new ApiError(404, "not_found", "no such fragment");
          }
        },
        {
          params: FragmentParams,
          detail: doc("A live page section, for refreshes", FRAGMENT),
        },
      )
      .get(
        "/dashboard/fragments/job/:id",
        async ({ request, viewer, params }) => {
          if (!viewer) throw new ApiError(401, "unauthorized", "session expired");
          const found = await service.job(viewer.principal, params.id);
          if (!found) throw notFound("job");
          return htmlResponse(request, jobBody(found.job, found.owner, viewer.csrf));
        },
        { params: IdParams, detail: doc("A job page's live section", FRAGMENT) },
      )
      .get(
        "/dashboard/assets/:file",
        ({ params }) => {
          const type = ASSETS[params.file];
          if (!type) throw new ApiError(404, "not_found", "file not found");
          return new Response(Bun.file(join(assetDir, params.file)), {
            headers: {
              "content-type": type,
              "cache-control": "no-cache",
              "x-content-type-options": "nosniff",
            },
          });
        },
        {
          params: FileParams,
          detail: doc(
            "The dashboard's script and stylesheet",
            { responseType: "text/plain", responseDescription: "JavaScript or CSS" },
            [],
          ),
        },
      )
      .get(
        "/favicon.ico",
        async () =>
          new Response(await faviconIco(), {
            headers: { "content-type": "image/x-icon", "cache-control": "public, max-age=86400" },
          }),
        {
          detail: doc(
            "The icon browsers show in the tab",
            { responseType: "image/x-icon", responseDescription: "The icon" },
            [],
          ),
        },
      )
      .get(
        "/favicon.svg",
        () =>
          new Response(FAVICON_SVG, {
            headers: { "content-type": "image/svg+xml", "cache-control": "public, max-age=86400" },
          }),
        {
          detail: doc(
            "The icon as SVG",
            { responseType: "image/svg+xml", responseDescription: "The icon" },
            [],
          ),
        },
      )
      .ws("/dashboard/ws", {
        // Browsers let any site open a WebSocket with our cookies: refuse other sites' pages outright.
        ...socketHandlers(ctx, (data: { viewer: SignedIn | null; sameOrigin: boolean }) =>
          data.viewer && data.sameOrigin ? data.viewer.principal : null,
        ),
        detail: doc(
          "Live job events for the dashboard (the /ws protocol, authenticated by the session cookie)",
        ),
      })
  );
};

/** Runs a key action; a refusal (unknown key, revoked, reserved name) returns to the keys page with its notice. */
async function keyAction(back: string, action: () => Promise<Response>): Promise<Response> {
  try {
    return await action();
  } catch (err) {
    if (err instanceof ApiError && err.status >= 400 && err.status < 500 && NOTICES[err.code]) {
      return redirect(`${back}error=${err.code}`);
    }
    throw err;
  }
}

/** Runs a job control action and returns to the job page with a fixed notice (or the conflict's code). */
async function control(action: () => Promise<unknown>, back: string, done: string): Promise<Response> {
  try {
    await action();
    return redirect(`${back}?done=${done}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) return redirect(`${back}?error=${err.code}`);
    throw err;
  }
}
