import type { User } from "../../../db/schema";
import type { jobView } from "../../jobs/service";
import { type Html, html } from "../html";
import type { JobFilters } from "../service";
import { badge, duration, emptyState, generatedAt, ownerLabel, progressBar, shortId, time } from "./parts";

type JobRow = ReturnType<typeof jobView>;

export type JobsData = {
  jobs: JobRow[];
  nextCursor: string | null;
  owners: Map<string, User>;
  filters: Omit<JobFilters, "limit"> & { q?: string };
  types: string[];
  notFound?: string;
};

const STATUS_OPTIONS = [
  "queued",
  "waiting",
  "delayed",
  "active",
  "completed",
  "partial",
  "failed",
  "cancelled",
];

/** The filters as a query string (without the cursor unless asked). */
export function filterQuery(f: JobsData["filters"], withCursor = false): string {
  const q = new URLSearchParams();
  for (const key of ["status", "type", "userId", "recipeId"] as const) {
    const v = f[key];
    if (v) q.set(key, v);
  }
  if (f.internal) q.set("internal", "1");
  if (withCursor && f.cursor) q.set("cursor", f.cursor);
  const s = q.toString();
  return s ? `?${s}` : "";
}

function filterForm(d: JobsData): Html {
  const f = d.filters;
  return html`<form class="filters" method="get" action="/dashboard/jobs" role="search" aria-label="Filter jobs">
    <div class="field">
      <label for="f-status">Status</label>
      <select id="f-status" name="status">
        <option value="">Any</option>
        ${STATUS_OPTIONS.map((s) => html`<option value="${s}"${f.status === s ? html` selected` : ""}>${s}</option>`)}
      </select>
    </div>
    <div class="field">
      <label for="f-type">Type</label>
      <input id="f-type" name="type" list="job-types" value="${f.type ?? ""}" placeholder="any">
      <datalist id="job-types">${d.types.map((t) => html`<option value="${t}"></option>`)}</datalist>
    </div>
    <div class="field">
      <label for="f-user">User</label>
      <input id="f-user" name="userId" value="${f.userId ?? ""}" placeholder="external or internal id">
    </div>
    <div class="field">
      <label for="f-recipe">Recipe</label>
      <input id="f-recipe" name="recipeId" value="${f.recipeId ?? ""}" placeholder="recipe id">
    </div>
    <div class="field check">
      <label for="f-internal" title="Easel's own work: webhook deliveries, card renders, backlog top-ups">
        <input id="f-internal" type="checkbox" name="internal" value="1"${f.internal ? html` checked` : ""}>
        Show internal jobs</label>
    </div>
    <div class="field grow">
      <label for="f-q">Job id</label>
      <input id="f-q" name="q" value="${f.q ?? ""}" placeholder="Search by job id" spellcheck="false">
    </div>
    <div class="field buttons">
      <button class="btn primary" type="submit">Apply</button>
      <a class="btn ghost" href="/dashboard/jobs">Reset</a>
    </div>
  </form>`;
}

export function jobRows(d: Pick<JobsData, "jobs" | "owners">): Html {
  if (d.jobs.length === 0) {
    return html`<tr><td colspan="8">${emptyState("No jobs match", "Jobs appear here as soon as they are queued.")}</td></tr>`;
  }
  return html`${d.jobs.map(
    (j) => html`<tr data-job-id="${j.id}" data-status="${j.status}">
      <td><a class="mono" href="/dashboard/jobs/${j.id}" title="${j.id}">${shortId(j.id)}</a></td>
      <td class="hide-sm"><span class="tag">${j.type}</span></td>
      <td>${badge(j.status)}</td>
      <td class="progress-col">${progressBar(j)}</td>
      <td class="hide-sm">${ownerLabel(j.ownerId, d.owners)}</td>
      <td class="num hide-sm">${j.attempts}/${j.maxAttempts}</td>
      <td class="hide-sm">${time(j.createdAt)}</td>
      <td class="num hide-sm">${duration(j.startedAt, generatedAt(j))}</td>
    </tr>`,
  )}`;
}

export function jobsPage(d: JobsData): Html {
  const query = filterQuery(d.filters, true);
  return html`${filterForm(d)}
  ${d.notFound && html`<p class="alert" role="alert">No job with id <span class="mono">${d.notFound}</span> that you can see.</p>`}
  <section class="panel flush">
    <div class="table-wrap"><table class="jobs">
      <caption class="sr-only">Jobs, newest first</caption>
      <thead><tr><th scope="col">Job</th><th scope="col" class="hide-sm">Type</th><th scope="col">Status</th>
        <th scope="col">Progress</th><th scope="col" class="hide-sm">User</th>
        <th scope="col" class="num hide-sm">Attempts</th><th scope="col" class="hide-sm">Created</th>
        <th scope="col" class="num hide-sm">Took</th></tr></thead>
      <tbody data-fragment="/dashboard/fragments/jobs${query}" data-refresh-ms="2000">${jobRows(d)}</tbody>
    </table></div>
  </section>
  <nav class="pager" aria-label="Pages">
    ${d.filters.cursor ? html`<a class="btn ghost" href="/dashboard/jobs${filterQuery(d.filters)}">← Newest</a>` : html`<span></span>`}
    ${
      d.nextCursor
        ? html`<a class="btn ghost" href="/dashboard/jobs${filterQuery({ ...d.filters, cursor: d.nextCursor }, true)}">Older →</a>`
        : ""
    }
  </nav>`;
}
