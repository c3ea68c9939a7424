import type { deliveryView, WebhookService } from "../../webhooks/service";
import { type Html, html } from "../html";
import { badge, emptyState, shortId, time } from "./parts";

type Endpoint = Awaited<ReturnType<WebhookService["listEndpoints"]>>["endpoints"][number];
type Delivery = ReturnType<typeof deliveryView>;

const DELIVERY_BADGE: Record<string, string> = {
  delivered: "completed",
  failed: "failed",
  pending: "queued",
};
const ENDPOINT_BADGE: Record<string, string> = {
  active: "completed",
  failing: "failed",
  disabled: "cancelled",
};

function codeClass(code: number | null): string {
  if (code === null) return "muted";
  return code < 300 ? "ok-text" : "fail-text";
}

function endpoints(list: Endpoint[]): Html {
  if (list.length === 0) return emptyState("No endpoints", "Register one with POST /api/webhooks.");
  return html`<div class="table-wrap"><table>
    <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">State</th>
      <th scope="col" class="num">Failures</th><th scope="col">Created</th></tr></thead>
    <tbody>${list.map(
      (e) => html`<tr>
        <td class="mono small break">${e.url}</td>
        <td>${e.events.map((ev) => html`<span class="tag">${ev}</span> `)}</td>
        <td>${badge(ENDPOINT_BADGE[e.status] ?? e.status, e.status)}
          ${e.disabledReason && html`<span class="small muted">${e.disabledReason}</span>`}</td>
        <td class="num">${e.failureCount}</td>
        <td>${time(e.createdAt)}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

function deliveries(list: Delivery[]): Html {
  if (list.length === 0) return emptyState("No deliveries yet");
  return html`<div class="table-wrap"><table>
    <thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">URL</th><th scope="col">State</th>
      <th scope="col" class="num">HTTP</th><th scope="col" class="num">Attempts</th><th scope="col" class="num">Time</th>
      <th scope="col">Job</th><th scope="col">Last error</th></tr></thead>
    <tbody>${list.map(
      (d) => html`<tr>
        <td>${time(d.createdAt)}</td>
        <td><span class="tag">${d.eventType}</span></td>
        <td class="mono small break">${d.url}</td>
        <td>${badge(DELIVERY_BADGE[d.status] ?? d.status, d.status)}</td>
        <td class="num"><span class="${codeClass(d.lastStatusCode)}">${d.lastStatusCode ?? "—"}</span></td>
        <td class="num">${d.attempts}</td>
        <td class="num">${d.lastDurationMs === null ? "—" : `${d.lastDurationMs} ms`}</td>
        <td>${d.jobId ? html`<a class="mono" href="/dashboard/jobs/${d.jobId}">${shortId(d.jobId)}</a>` : "—"}</td>
        <td class="small">${d.lastError ?? ""}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

export function webhooksPage(d: { endpoints: Endpoint[]; deliveries: Delivery[] }): Html {
  return html`<div data-fragment="/dashboard/fragments/webhooks" data-refresh-ms="5000">${webhooksBody(d)}</div>`;
}

export function webhooksBody(d: { endpoints: Endpoint[]; deliveries: Delivery[] }): Html {
  return html`<section class="panel" aria-labelledby="endpoints-h"><h2 id="endpoints-h">Endpoints</h2>${endpoints(d.endpoints)}</section>
  <section class="panel" aria-labelledby="deliveries-h"><h2 id="deliveries-h">Recent deliveries</h2>${deliveries(d.deliveries)}</section>`;
}
