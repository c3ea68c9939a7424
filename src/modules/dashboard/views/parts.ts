import type { User } from "../../../db/schema";
import { type Html, html } from "../html";

export { isTerminalStatus } from "../../../db/schema";

export function badge(status: string, label = status): Html {
  return html`<span class="badge s-${status}" data-status-badge>${label}</span>`;
}

/** A native progress bar (no inline styles under the page's CSP), updated live by the page script. */
export function progressBar(job: { id: string; status: string; progress: number }): Html {
  const value = job.status === "completed" ? 100 : job.progress;
  return html`<span class="progress-cell">
    <progress class="bar s-${job.status}" max="100" value="${value}" data-progress
      aria-label="Progress of job ${shortId(job.id)}">${value}%</progress>
    <span class="pct" data-pct>${value}%</span>
  </span>`;
}

/** The last 8 characters: UUIDv7 ids share their time prefix, so the tail is what tells them apart. */
export function shortId(id: string): string {
  return id.length > 12 ? `…${id.slice(-8)}` : id;
}

/** An absolute UTC time the page script turns into "3 min ago" (with the exact time as a tooltip). */
export function time(ms: number | null | undefined): Html {
  if (!ms) return html`<span class="muted">—</span>`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}" title="${iso}" data-rel>${iso.slice(0, 19).replace("T", " ")} UTC</time>`;
}

export function duration(from: number | null, to: number | null): string {
  if (!from || !to) return "—";
  const ms = Math.max(0, to - from);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function ownerLabel(ownerId: string | null, owners: Map<string, User>): Html {
  if (!ownerId) return html`<span class="muted">—</span>`;
  const u = owners.get(ownerId);
  if (!u) return html`<span class="mono">${shortId(ownerId)}</span>`;
  return html`<span title="${u.id}">${u.externalId ?? u.name}</span>`;
}

export function json(value: unknown): Html {
  return html`<pre class="code"><code>${JSON.stringify(value, null, 2) ?? "null"}</code></pre>`;
}

/** A hidden CSRF field for forms that change state. */
export function csrfField(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}">`;
}

export function emptyState(title: string, hint?: string): Html {
  return html`<div class="empty"><p class="empty-title">${title}</p>${hint && html`<p class="muted">${hint}</p>`}</div>`;
}

/**
 * When a job's work ended: its finish, except for a backlog image claimed instantly, whose `finishedAt` is the
 * claim (the time it waited in the backlog is not how long it took).
 */
export function generatedAt(job: {
  finishedAt: number | null;
  instantClaim: { generatedAt: number | null } | null;
}) {
  return job.instantClaim?.generatedAt ?? job.finishedAt;
}
