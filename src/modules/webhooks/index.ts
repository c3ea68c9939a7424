import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { authPlugin } from "../auth/plugin";
import { routeDoc } from "../docs/model";
import { CreateEndpointBody, DeliveriesQuery, EndpointIdParams } from "./model";

export { DELIVER_JOB } from "./fanout";
export { WebhookService, webhookOptions } from "./service";

const tags = ["webhooks"];

export const webhooksModule = (ctx: AppContext) =>
  new Elysia({ prefix: "/api", name: "webhooks" })
    .use(authPlugin(ctx.auth))
    .post(
      "/webhooks",
      async ({ principal, body, set }) => {
        const created = await ctx.webhooks.createEndpoint(principal, body);
        set.status = 201;
        return created;
      },
      {
        auth: true,
        body: CreateEndpointBody,
        detail: routeDoc({
          tags,
          summary: "Register a webhook endpoint; its signing secret is shown once",
          status: 201,
          requestExample: {
            url: "https://example.com/hooks/easel",
            events: ["job.completed", "job.failed"],
          },
        }),
      },
    )
    .get("/webhooks", ({ principal }) => ctx.webhooks.listEndpoints(principal), {
      auth: true,
      detail: { tags, summary: "Your webhook endpoints" },
    })
    .get("/webhooks/secret", ({ principal }) => ctx.webhooks.ownerSecret(principal), {
      auth: true,
      detail: { tags, summary: "The secret that signs your jobs' own webhookUrl deliveries" },
    })
    .post("/webhooks/secret/rotate", ({ principal }) => ctx.webhooks.rotateOwnerSecret(principal), {
      auth: true,
      detail: {
        tags,
        summary: "Rotate that secret (the old one still signs, as a second signature, for a day)",
      },
    })
    .get("/webhooks/deliveries", ({ principal, query }) => ctx.webhooks.deliveries(principal, query), {
      auth: true,
      query: DeliveriesQuery,
      detail: { tags, summary: "Your deliveries (endpoints and jobs' webhookUrl), newest first" },
    })
    .get("/webhooks/:id", ({ principal, params }) => ctx.webhooks.getEndpoint(principal, params.id), {
      auth: true,
      params: EndpointIdParams,
      detail: { tags, summary: "One webhook endpoint" },
    })
    .delete(
      "/webhooks/:id",
      ({ principal, params, set }) => {
        ctx.webhooks.deleteEndpoint(principal, params.id);
        set.status = 204;
      },
      {
        auth: true,
        params: EndpointIdParams,
        detail: routeDoc({ tags, summary: "Delete an endpoint and its deliveries", status: 204 }),
      },
    )
    .post(
      "/webhooks/:id/test",
      ({ principal, params, set }) => {
        set.status = 202;
        return ctx.webhooks.test(principal, params.id);
      },
      {
        auth: true,
        params: EndpointIdParams,
        detail: routeDoc({ tags, summary: "Send a webhook.test event", status: 202 }),
      },
    )
    .get(
      "/webhooks/:id/deliveries",
      ({ principal, params, query }) => ctx.webhooks.endpointDeliveries(principal, params.id, query),
      {
        auth: true,
        params: EndpointIdParams,
        query: DeliveriesQuery,
        detail: { tags, summary: "An endpoint's deliveries, newest first" },
      },
    );
