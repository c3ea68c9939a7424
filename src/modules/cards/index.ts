import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { rateLimited } from "../../errors";
import { TokenBucket } from "../../rate-limit";
import { authPlugin } from "../auth/plugin";
import { idempotencyPlugin } from "../idempotency/plugin";
import { fallbackImage } from "./fallback";
import { CardIdParams, CreateCardBody, ListCardsQuery, PatchCardBody, PreviewBody } from "./model";

const png = (bytes: Uint8Array, headers: Record<string, string>, status = 200) =>
  new Response(status === 304 ? null : bytes, {
    status,
    headers: { "content-type": "image/png", ...headers },
  });

export const cardsModule = (ctx: AppContext) => {
  // 30 previews a minute per user: a burst of 30, then one every 2 s.
  const previewLimit = new TokenBucket(30);
  return new Elysia({ prefix: "/api", name: "cards" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get("/cards/templates", () => ({ templates: ctx.cards.templates() }), {
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
        detail: { tags: ["cards"], summary: "Render a card synchronously and return the PNG (rate limited)" },
      },
    )
    .post("/cards", ({ principal, body, idem }) => ctx.cards.create(principal, body, idem), {
      auth: ["admin", "app", "user"],
      idempotent: 201,
      body: CreateCardBody,
      detail: { tags: ["cards"], summary: "Create a live card; it is rendered before the response" },
    })
    .get("/cards", ({ principal, query }) => ctx.cards.list(principal, query), {
      auth: "token",
      query: ListCardsQuery,
      detail: { tags: ["cards"], summary: "Your cards" },
    })
    .get("/cards/:id", ({ principal, params }) => ctx.cards.view(ctx.cards.visible(principal, params.id)), {
      auth: "token",
      params: CardIdParams,
      detail: { tags: ["cards"], summary: "A card with its current image URL and render status" },
    })
    .patch("/cards/:id", ({ principal, params, body }) => ctx.cards.update(principal, params.id, body.data), {
      auth: ["admin", "app", "user"],
      params: CardIdParams,
      body: PatchCardBody,
      detail: { tags: ["cards"], summary: "Merge-patch a card's data; re-rendered once per debounce window" },
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
        detail: { tags: ["cards"], summary: "Delete a card and its images" },
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
        detail: {
          tags: ["cards"],
          summary:
            "The card's latest image at a stable URL (public; revalidated every CARD_CACHE_MAX_AGE seconds)",
        },
      },
    );
};
