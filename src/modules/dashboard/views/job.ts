import type { User } from "../../../db/schema";
import { formatBytes } from "../../../units";
import type { JobService } from "../../jobs/service";
import { type Html, html } from "../html";
import {
  badge,
  csrfField,
  duration,
  generatedAt,
  isTerminalStatus,
  json,
  progressBar,
  shortId,
  time,
} from "./parts";

type Detail = Awaited<ReturnType<JobService["detail"]>>;
type Asset = NonNullable<Detail["assets"]>[number];

const RETRYABLE = new Set(["failed", "partial", "cancelled"]);

export function jobActions(job: Detail, csrf: string): Html {
  const retry = RETRYABLE.has(job.status);
  const cancel = !isTerminalStatus(job.status);
  return html`<div class="actions" data-job-actions>
    ${
      retry &&
      html`<form method="post" action="/dashboard/jobs/${job.id}/retry">${csrfField(csrf)}
      <button class="btn primary" type="submit">Retry</button></form>`
    }
    ${
      cancel &&
      html`<form method="post" action="/dashboard/jobs/${job.id}/cancel">${csrfField(csrf)}
      <button class="btn danger" type="submit">Cancel</button></form>`
    }
  </div>`;
}

function thumb(a: Asset): Html {
  return html`<a class="thumb" href="${a.url}" target="_blank" rel="noopener">
    <img src="${a.thumbnailUrl ?? a.url}" alt="Generated image ${a.width ?? "?"}×${a.height ?? "?"}" loading="lazy"
      width="${a.width ?? ""}" height="${a.height ?? ""}">
    <span class="thumb-meta">${a.width ?? "?"}×${a.height ?? "?"} · ${formatBytes(a.bytes)}</span>
  </a>`;
}

const OUTCOME_LABEL = {
  retried: "failed, retried",
  stalled: "lost (worker died), re-queued",
  rerun: "ended, re-run by hand",
};

function timeline(job: Detail): Html {
  // Numbered along the timeline: an operator's retry starts the job's own attempt counter again.
  const earlier: [string, number | null, string?][] = job.history.map((a, i) => [
    `Attempt ${i + 1} ${OUTCOME_LABEL[a.outcome]}`,
    a.endedAt,
    [
      a.error ? `${a.error.code}: ${a.error.message}` : "",
      a.startedAt ? `ran ${duration(a.startedAt, a.endedAt)}` : "",
    ]
      .filter(Boolean)
      .join(" · "),
  ]);
  const steps: [string, number | null, string?][] = [
    ["Created", job.createdAt],
    ...(job.runAt > job.createdAt + 1000 && job.history.length === 0
      ? [["Scheduled for", job.runAt] as [string, number]]
      : []),
    ...earlier,
    [job.history.length > 0 ? `Attempt ${job.history.length + 1} started` : "Started", job.startedAt],
    ...(job.instantClaim
      ? [
          ["Generated for the backlog", job.instantClaim.generatedAt] as [string, number | null],
          ["Claimed instantly", job.instantClaim.claimedAt] as [string, number | null],
        ]
      : [
          [isTerminalStatus(job.status) ? `Finished (${job.status})` : "Finished", job.finishedAt] as [
            string,
            number | null,
          ],
        ]),
  ];
  return html`<ol class="timeline">
    ${steps.map(
      ([label, at, note]) => html`<li class="${at ? "done" : "pending"}">
        <span class="tl-label">${label}</span> ${time(at)} ${note && html`<span class="muted small">${note}</span>`}
      </li>`,
    )}
  </ol>
  <p class="small muted">Attempts ${job.attempts} of ${job.maxAttempts} · took ${duration(job.startedAt, generatedAt(job))}</p>`;
}

function errorBox(error: Detail["error"]): Html {
  if (!error) return html``;
  return html`<div class="alert error" role="alert">
    <strong class="mono">${error.code}</strong> ${error.message}
    <div class="small">${error.retryable ? "retryable" : "not retryable"} · ${error.refundable ? "refundable" : "not refundable"}</div>
  </div>`;
}

/** What was asked: the generation's settings, recipe and variables (the prompts are on the items). */
function requestPanel(job: Detail): Html {
  const r = job.request;
  if (!r)
    return html`<section class="panel" aria-labelledby="input-h"><h2 id="input-h">Input</h2>${json(job.input)}</section>`;
  return html`<section class="panel" aria-labelledby="request-h">
    <h2 id="request-h">Request</h2>
    ${r.prompt !== null && html`<blockquote class="prompt" data-prompt>${r.prompt}</blockquote>`}
    <dl class="facts">
      <dt>Provider</dt><dd>${r.provider}${r.model && html` <span class="mono small">${r.model}</span>`}</dd>
      <dt>Size</dt><dd>${r.size}${r.n > 1 ? ` × ${r.n}` : ""}</dd>
      <dt>Output</dt><dd class="mono small">${typeof r.output === "string" ? r.output : JSON.stringify(r.output)}</dd>
      ${r.negativePrompt && html`<dt>Negative prompt</dt><dd>${r.negativePrompt}</dd>`}
      ${r.seed !== null && html`<dt>Seed</dt><dd class="mono">${r.seed}</dd>`}
      ${r.edit && html`<dt>Edit</dt><dd>from an input image</dd>`}
      ${
        r.variables &&
        html`<dt>Variables</dt><dd class="mono small">${Object.entries(r.variables)
          .map(([k, v]) => `${k}=${v}`)
          .join(", ")}</dd>`
      }
      ${r.params && html`<dt>Params</dt><dd class="mono small">${JSON.stringify(r.params)}</dd>`}
    </dl>
  </section>`;
}

function metadataPanel(job: Detail): Html {
  return html`<section class="panel" aria-labelledby="metadata-h">
    <h2 id="metadata-h">Metadata</h2>
    ${job.metadata ? html`<div data-metadata>${json(job.metadata)}</div>` : html`<p class="muted small">None given.</p>`}
  </section>`;
}

function itemsTable(job: Detail): Html {
  const items = job.items ?? [];
  if (items.length === 0) return html``;
  const prompts = new Map((job.request?.items ?? []).map((i) => [i.id, i.prompt]));
  return html`<section class="panel" aria-labelledby="items-h">
    <h2 id="items-h">Items <span class="muted small">${items.filter((i) => i.status === "completed").length} of ${items.length} done</span></h2>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col" class="num">#</th><th scope="col">Key</th><th scope="col">Prompt</th><th scope="col">Status</th>
        <th scope="col" class="num">Attempts</th>
        <th scope="col">Images</th><th scope="col">Error</th></tr></thead>
      <tbody>${items.map(
        (i) => html`<tr>
          <td class="num">${i.idx}</td><td class="mono">${i.id}</td><td class="prompt-cell">${prompts.get(i.id) ?? html`<span class="muted">—</span>`}</td>
          <td>${badge(i.status)}</td><td class="num">${i.attempts}</td>
          <td><div class="thumbs small-thumbs">${i.assets.map(thumb)}</div></td>
          <td>${i.error ? html`<span class="mono small">${i.error.code}</span> ${i.error.message}` : html`<span class="muted">—</span>`}</td>
        </tr>`,
      )}</tbody>
    </table></div>
  </section>`;
}

/** Everything below the page heading (also served alone as a fragment for live refreshes). */
export function jobBody(job: Detail, owner: User | null, csrf: string): Html {
  const assets = job.assets ?? [];
  return html`<div class="job-head" data-job-id="${job.id}" data-status="${job.status}">
    <div class="job-title">${badge(job.status)} <span class="tag">${job.type}</span>
      <span class="mono small muted">${job.id}</span></div>
    ${jobActions(job, csrf)}
  </div>
  <div class="grid-2">
    <section class="panel" aria-labelledby="summary-h">
      <h2 id="summary-h">Summary</h2>
      <div data-job-id="${job.id}" data-status="${job.status}">${progressBar(job)}
        <p class="small muted" data-message>${job.progressMessage ?? ""}</p></div>
      <dl class="facts">
        <dt>User</dt><dd>${owner ? html`${owner.externalId ?? owner.name} <span class="muted small mono">${shortId(owner.id)}</span>` : "—"}</dd>
        <dt>Recipe</dt><dd>${job.recipeId ?? "—"}</dd>
        <dt>Priority</dt><dd>${job.priority}</dd>
        <dt>Credits</dt><dd>${job.creditsCharged} charged · ${job.creditsRefunded} refunded</dd>
        ${job.dedupeKey && html`<dt>Dedupe key</dt><dd class="mono">${job.dedupeKey}</dd>`}
      </dl>
      ${errorBox(job.error)}
    </section>
    <section class="panel" aria-labelledby="timeline-h">
      <h2 id="timeline-h">Timeline</h2>
      ${timeline(job)}
    </section>
  </div>
  ${itemsTable(job)}
  ${
    assets.length > 0 &&
    html`<section class="panel" aria-labelledby="assets-h">
      <h2 id="assets-h">Images</h2>
      <div class="thumbs">${assets.map(thumb)}</div>
    </section>`
  }
  <div class="grid-2">
    ${requestPanel(job)}
    ${metadataPanel(job)}
  </div>
  <section class="panel" aria-labelledby="result-h"><h2 id="result-h">Result</h2>${json(job.result)}</section>`;
}

export function jobPage(job: Detail, owner: User | null, csrf: string, notice?: string): Html {
  const refresh = isTerminalStatus(job.status) ? "0" : "2000";
  return html`<p class="crumbs"><a href="/dashboard/jobs">← All jobs</a></p>
  ${notice && html`<p class="alert" role="status">${notice}</p>`}
  <div data-fragment="/dashboard/fragments/job/${job.id}" data-refresh-ms="${refresh}">${jobBody(job, owner, csrf)}</div>`;
}
