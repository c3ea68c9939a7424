import { Elysia } from "elysia";
import type { Config } from "../../config";
import { rateLimited } from "../../errors";
import { TokenBucket } from "../../rate-limit";
import { poll } from "../../render/templates/poll";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { routeDoc } from "../docs/model";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { fallbackImage } from "./fallback";
import {
  CardIdParams,
  CardList,
  CardView,
  CreateCardBody,
  ListCardsQuery,
  PatchCardBody,
  PreviewBody,
  TemplateList,
} from "./model";
import type { CardService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  cards: CardService;
  config: Pick<Config, "CARD_CACHE_MAX_AGE">;
  idempotency: IdempotencyService;
};

const png = (bytes: Uint8Array, headers: Record<string, string>, status = 200) =>
  new Response(status === 304 ? null : bytes, {
    status,
    headers: { "content-type": "image/png", ...headers },
  });

export const cardsModule = (ctx: Deps) => {
  // 30 previews a minute per user: a burst of 30, then one every 2 s.
  const previewLimit = new TokenBucket(30);
  return new Elysia({ prefix: "/api", name: "cards" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get("/cards/templates", () => ({ templates: ctx.cards.templates() }), {
      response: { 200: TemplateList },
      detail: { tags: ["cards"], summary: "Card templates with their data schemas and example data" },
    })
    .post(
      "/cards/preview",
      async ({ principal, body }) => {
        const wait = previewLimit.take(principal.user.id);
        if (wait > 0) throw rateLimited("preview limit reached", wait);
        return png(await ctx.cards.preview(body.template, body.data), { "cache-control": "no-store" });
      },
      {
        auth: ["admin", "app", "user"],
        body: PreviewBody,
        detail: routeDoc({
          tags: ["cards"],
          summary: "Render a card synchronously and return the PNG (rate limited)",
          responseType: "image/png",
          responseDescription: "The rendered PNG",
          requestExample: { template: "poll", data: poll.example },
          errors: { 429: "preview rate limit reached (`rate_limited`, `details.retryAfterMs`)" },
        }),
      },
    )
    .post("/cards", ({ principal, body, idem }) => ctx.cards.create(principal, body, idem), {
      auth: ["admin", "app", "user"],
      idempotent: 201,
      body: CreateCardBody,
      response: { 201: CardView },
      detail: routeDoc({
        tags: ["cards"],
        summary: "Create a live card; it is rendered before the response",
        requestExample: { template: "poll", data: poll.example, userId: "user-42" },
      }),
    })
    .get("/cards", ({ principal, query }) => ctx.cards.list(principal, query), {
      auth: "token",
      query: ListCardsQuery,
      response: { 200: CardList },
      detail: { tags: ["cards"], summary: "Your cards" },
    })
    .get(
      "/cards/:id",
      async ({ principal, params }) => ctx.cards.view(await ctx.cards.visible(principal, params.id)),
      {
        auth: "token",
        params: CardIdParams,
        response: { 200: CardView },
        detail: { tags: ["cards"], summary: "A card with its current image URL and render status" },
      },
    )
    .patch("/cards/:id", ({ principal, params, body }) => ctx.cards.update(principal, params.id, body.data), {
      auth: ["admin", "app", "user"],
      params: CardIdParams,
      body: PatchCardBody,
      response: { 200: CardView },
      detail: routeDoc({
        tags: ["cards"],
        summary: "Merge-patch a card's data; re-rendered once per debounce window",
        requestExample: {
          data: { options: poll.example.options.map((o) => ({ ...o, votes: o.votes + 1 })) },
        },
      }),
    })
    .delete(
      "/cards/:id",
      async ({ principal, params, set }) => {
        await ctx.cards.remove(principal, params.id);
        set.status = 204;
      },
      {
        auth: ["admin", "app", "user"],
        params: CardIdParams,
        detail: routeDoc({ tags: ["cards"], summary: "Delete a card and its images", status: 204 }),
      },
    )
    .get(
      "/cards/:id/image",
      async ({ params, request }) => {
        const { card, object } = await ctx.cards.latestImage(params.id);
        if (!object) return png(await fallbackImage(), { "cache-control": "no-store" });
        const etag = `"${card.id}-${card.renderedVersion}"`;
        const headers = {
          etag,
          "cache-control": `public, max-age=${ctx.config.CARD_CACHE_MAX_AGE}, must-revalidate`,
          "last-modified": new Date(object.lastModified).toUTCString(),
        };
        if (request.headers.get("if-none-match") === etag) return png(object.body, headers, 304);
        return png(object.body, headers);
      },
      {
        params: CardIdParams,
        detail: routeDoc({
          tags: ["cards"],
          summary:
            "The card's latest image at a stable URL (public; revalidated every CARD_CACHE_MAX_AGE seconds)",
          responseType: "image/png",
          responseDescription:
            "The latest PNG (a placeholder while the first render is pending); 304 on If-None-Match",
        }),
      },
    );
};
