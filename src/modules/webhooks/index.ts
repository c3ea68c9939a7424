import { Elysia } from "elysia";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { routeDoc } from "../docs/model";
import {
  CreateEndpointBody,
  DeliveriesQuery,
  DeliveryList,
  EndpointIdParams,
  EndpointList,
  EndpointView,
  NewEndpointView,
  OwnerSecretView,
  TestDeliveryView,
} from "./model";
import type { WebhookService } from "./service";

export { DELIVER_JOB } from "./fanout";
export { WebhookService, webhookOptions } from "./service";

const tags = ["webhooks"];

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; webhooks: WebhookService };

export const webhooksModule = (ctx: Deps) =>
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
        response: { 201: NewEndpointView },
        detail: routeDoc({
          tags,
          summary: "Register a webhook endpoint; its signing secret is shown once",
          requestExample: {
            url: "https://example.com/hooks/easel",
            events: ["job.completed", "job.failed"],
          },
        }),
      },
    )
    .get("/webhooks", ({ principal }) => ctx.webhooks.listEndpoints(principal), {
      auth: true,
      response: { 200: EndpointList },
      detail: { tags, summary: "Your webhook endpoints" },
    })
    .get("/webhooks/secret", ({ principal }) => ctx.webhooks.ownerSecret(principal), {
      auth: true,
      response: { 200: OwnerSecretView },
      detail: { tags, summary: "The secret that signs your jobs' own webhookUrl deliveries" },
    })
    .post("/webhooks/secret/rotate", ({ principal }) => ctx.webhooks.rotateOwnerSecret(principal), {
      auth: true,
      response: { 200: OwnerSecretView },
      detail: {
        tags,
        summary: "Rotate that secret (the old one still signs, as a second signature, for a day)",
      },
    })
    .get("/webhooks/deliveries", ({ principal, query }) => ctx.webhooks.deliveries(principal, query), {
      auth: true,
      query: DeliveriesQuery,
      response: { 200: DeliveryList },
      detail: { tags, summary: "Your deliveries (endpoints and jobs' webhookUrl), newest first" },
    })
    .get("/webhooks/:id", ({ principal, params }) => ctx.webhooks.getEndpoint(principal, params.id), {
      auth: true,
      params: EndpointIdParams,
      response: { 200: EndpointView },
      detail: { tags, summary: "One webhook endpoint" },
    })
    .delete(
      "/webhooks/:id",
      async ({ principal, params, set }) => {
        await ctx.webhooks.deleteEndpoint(principal, params.id);
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
        response: { 202: TestDeliveryView },
        detail: { tags, summary: "Send a webhook.test event" },
      },
    )
    .get(
      "/webhooks/:id/deliveries",
      ({ principal, params, query }) => ctx.webhooks.endpointDeliveries(principal, params.id, query),
      {
        auth: true,
        params: EndpointIdParams,
        query: DeliveriesQuery,
        response: { 200: DeliveryList },
        detail: { tags, summary: "An endpoint's deliveries, newest first" },
      },
    );
