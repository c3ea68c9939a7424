import type { Instance, User } from "../../../db/schema";
import type { ProviderStats } from "../../../providers/registry";
import type { QueueStats } from "../../../queue";
import type { JobView } from "../../jobs/service";
import { type Html, html } from "../html";
import type { ThroughputBucket } from "../service";
import { emptyState, ownerLabel, progressBar, shortId, time } from "./parts";

export type OverviewData = {
  counts: QueueStats;
  throughput: ThroughputBucket[];
  active: JobView[];
  owners: Map<string, User>;
  providers: {
    name: string;
    defaultModel: string;
    models: string[];
    isDefault: boolean;
    limits: { concurrency: number; rpm: number };
    stats: ProviderStats;
  }[];
  workers: { running: boolean; total: number; free: number } | null;
  /** Admins only: the Easel processes sharing the database (one on SQLite). */
  instances: Instance[] | null;
};

const STATUSES: [keyof Omit<QueueStats, "byType">, string][] = [
  ["waiting", "Waiting"],
  ["delayed", "Delayed"],
  ["active", "Active"],
  ["completed", "Completed"],
  ["partial", "Partial"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
];

function statCards(counts: QueueStats): Html {
  return html`<p class="small muted">Apps' jobs only: internal work (webhook deliveries, card renders, backlog
    top-ups) is not counted. <a href="/dashboard/jobs?internal=1">Show internal jobs</a></p>
  <section class="stats" aria-label="Jobs by status">
    ${STATUSES.map(
      ([key, label]) => html`<a class="stat s-${key}" href="/dashboard/jobs?status=${key}">
        <span class="stat-label">${label}</span>
        <span class="stat-value" data-count="${key}">${counts[key]}</span>
      </a>`,
    )}
  </section>`;
}

/** Completions per 5 minutes as an SVG bar chart (SVG attributes, not inline styles: the CSP forbids those). */
function throughputChart(buckets: ThroughputBucket[]): Html {
  const max = Math.max(1, ...buckets.map((b) => b.completed + b.failed));
  const w = 24;
  const gap = 8;
  const h = 120;
  const total = buckets.reduce((n, b) => n + b.completed, 0);
  const failed = buckets.reduce((n, b) => n + b.failed, 0);
  const label = `${total} completed and ${failed} failed in the last hour`;
  const bars = buckets.map((b, i) => {
    const x = i * (w + gap);
    const ch = Math.round((b.completed / max) * h);
    const fh = Math.round((b.failed / max) * h);
    const at = new Date(b.start).toISOString().slice(11, 16);
    return html`<g><title>${at} UTC: ${b.completed} completed, ${b.failed} failed</title>
      <rect class="chart-bg" x="${x}" y="0" width="${w}" height="${h}" rx="4"/>
      ${ch > 0 && html`<rect class="chart-ok" x="${x}" y="${h - ch}" width="${w}" height="${ch}" rx="4"/>`}
      ${fh > 0 && html`<rect class="chart-fail" x="${x}" y="${h - ch - fh}" width="${w}" height="${fh}" rx="4"/>`}
    </g>`;
  });
  const width = buckets.length * (w + gap) - gap;
  return html`<figure class="chart">
    <svg viewBox="0 0 ${width} ${h}" role="img" aria-label="${label}" preserveAspectRatio="none">${bars}</svg>
    <div class="chart-axis small muted" aria-hidden="true"><span>60 min ago</span><span>30 min</span><span>now</span></div>
    <figcaption><span><span class="dot ok"></span>${total} completed</span>
      <span><span class="dot fail"></span>${failed} failed</span>
      <span class="muted">per 5 minutes, last hour</span></figcaption>
  </figure>`;
}

function activeList(jobs: JobView[], owners: Map<string, User>): Html {
  if (jobs.length === 0)
    return emptyState("Nothing running right now", "Active jobs show up here with live progress.");
  return html`<ul class="active-list">
    ${jobs.map(
      (j) => html`<li data-job-id="${j.id}" data-status="${j.status}">
        <div class="active-head">
          <a class="mono" href="/dashboard/jobs/${j.id}">${shortId(j.id)}</a>
          <span class="tag">${j.type}</span>
          <span class="muted small">${ownerLabel(j.ownerId, owners)} · started ${time(j.startedAt)}</span>
        </div>
        ${progressBar(j)}
        <div class="small muted" data-message>${j.progressMessage ?? ""}</div>
      </li>`,
    )}
  </ul>`;
}

function healthBadge(state: "ok" | "degraded" | "failing" | "idle", saturated: boolean): Html {
  if (state === "failing") return html`<span class="badge s-failed">failing</span>`;
  if (state === "degraded") return html`<span class="badge s-partial">degraded</span>`;
  if (saturated) return html`<span class="badge s-delayed">at limit</span>`;
  return html`<span class="badge s-completed">${state === "idle" ? "idle" : "ok"}</span>`;
}

function instanceTable(instances: Instance[]): Html {
  return html`<div class="table-wrap"><table>
    <caption class="sr-only">Easel processes sharing this database</caption>
    <thead><tr><th scope="col">Instance</th><th scope="col">Host</th><th scope="col">Version</th>
      <th scope="col">Started</th><th scope="col">Last heartbeat</th><th scope="col" class="num">Jobs running</th></tr></thead>
    <tbody>
      ${instances.map(
        (i) => html`<tr>
          <th scope="row" class="mono small" title="${i.id}">${i.id.startsWith(`${i.host}:`) ? i.id.slice(i.host.length + 1) : shortId(i.id)}</th>
          <td>${i.host}</td>
          <td class="mono small">${i.version}</td>
          <td>${time(i.startedAt)}</td>
          <td>${time(i.lastHeartbeatAt)}</td>
          <td class="num">${i.jobsRunning}</td>
        </tr>`,
      )}
    </tbody>
  </table></div>`;
}

function providerTable(providers: OverviewData["providers"]): Html {
  return html`<div class="table-wrap"><table>
    <caption class="sr-only">Image providers and their limiter state</caption>
    <thead><tr><th scope="col">Provider</th><th scope="col">Model</th><th scope="col" class="num">In flight</th>
      <th scope="col" class="num">Waiting</th><th scope="col" class="num">Requests / min</th>
      <th scope="col">Last 15 min</th><th scope="col">Health</th></tr></thead>
    <tbody>
      ${providers.map((p) => {
        const h = p.stats.health;
        const saturated = p.stats.waiting > 0 || (p.limits.rpm > 0 && p.stats.startsInWindow >= p.limits.rpm);
        return html`<tr>
          <th scope="row">${p.name} ${p.isDefault && html`<span class="tag">default</span>`}</th>
          <td class="mono small">${p.defaultModel}</td>
          <td class="num">${p.stats.active} / ${Number.isFinite(p.limits.concurrency) ? p.limits.concurrency : "∞"}</td>
          <td class="num">${p.stats.waiting}</td>
          <td class="num">${p.stats.startsInWindow} / ${p.limits.rpm > 0 && Number.isFinite(p.limits.rpm) ? p.limits.rpm : "∞"}</td>
          <td class="small">${h.ok} ok · ${h.failed} failed
            ${h.lastError && html`<div class="muted small" title="${h.lastError.message}">last error <span class="mono">${h.lastError.code}</span> ${time(h.lastError.at)}</div>`}</td>
          <td>${healthBadge(h.state, saturated)}</td>
        </tr>`;
      })}
    </tbody>
  </table></div>`;
}

/** The live part of the overview (also served alone as a fragment for refreshes). */
export function overviewBody(d: OverviewData): Html {
  return html`${statCards(d.counts)}
  <div class="grid-2">
    <section class="panel" aria-labelledby="throughput-h">
      <h2 id="throughput-h">Throughput</h2>
      ${throughputChart(d.throughput)}
    </section>
    <section class="panel" aria-labelledby="active-h">
      <h2 id="active-h">Active jobs
        ${d.workers && html`<span class="muted small">${d.workers.total - d.workers.free} of ${d.workers.total} worker slots busy${d.workers.running ? "" : " · pool stopped"}</span>`}
      </h2>
      ${activeList(d.active, d.owners)}
    </section>
  </div>
  <section class="panel" aria-labelledby="providers-h">
    <h2 id="providers-h">Providers</h2>
    ${providerTable(d.providers)}
  </section>
  ${
    d.instances &&
    html`<section class="panel" aria-labelledby="instances-h">
    <h2 id="instances-h">Instances <span class="muted small">${d.instances.length} live</span></h2>
    ${instanceTable(d.instances)}
  </section>`
  }`;
}

export function overviewPage(d: OverviewData): Html {
  return html`<div data-fragment="/dashboard/fragments/overview" data-refresh-ms="2000">${overviewBody(d)}</div>`;
}
