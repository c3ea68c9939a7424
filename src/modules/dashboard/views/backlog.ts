import { type Html, html } from "../html";
import type { BacklogRow } from "../service";
import { csrfField, emptyState } from "./parts";

/** Ready (solid) and in-flight (striped) against the minimum (the tick), in SVG. */
function levelBar(r: BacklogRow): Html {
  const scale = Math.max(r.min, r.ready + r.inFlight, 1);
  const w = 200;
  const ready = Math.round((Math.min(r.ready, scale) / scale) * w);
  const flight = Math.round((Math.min(r.inFlight, scale - Math.min(r.ready, scale)) / scale) * w);
  const tick = Math.round((r.min / scale) * w);
  return html`<svg class="level" viewBox="0 0 ${w} 14" preserveAspectRatio="none" role="img"
    aria-label="${r.ready} ready and ${r.inFlight} in flight of a minimum of ${r.min}">
    <rect class="level-bg" x="0" y="0" width="${w}" height="14" rx="7"/>
    ${ready > 0 && html`<rect class="level-ready" x="0" y="0" width="${ready}" height="14" rx="7"/>`}
    ${flight > 0 && html`<rect class="level-flight" x="${ready}" y="0" width="${flight}" height="14"/>`}
    <rect class="level-min" x="${Math.max(0, tick - 1)}" y="0" width="2" height="14"/>
  </svg>`;
}

function state(r: BacklogRow): Html {
  if (!r.active) return html`<span class="badge s-cancelled">inactive</span>`;
  if (r.paused) return html`<span class="badge s-failed" title="${r.lastError ?? ""}">paused</span>`;
  if (r.ready >= r.min) return html`<span class="badge s-completed">full</span>`;
  if (r.ready + r.inFlight >= r.min) return html`<span class="badge s-active">filling</span>`;
  return html`<span class="badge s-delayed">low</span>`;
}

export function backlogPage(rows: BacklogRow[], o: { csrf: string; notice?: string }): Html {
  if (rows.length === 0) {
    return emptyState(
      "No recipes yet",
      "Create a recipe (POST /api/recipes) and its backlog levels show up here.",
    );
  }
  return html`${o.notice && html`<p class="alert" role="status">${o.notice}</p>`}
  <section class="panel flush" data-fragment="/dashboard/fragments/backlog" data-refresh-ms="3000">
    ${backlogTable(rows, o)}
  </section>`;
}

export function backlogTable(rows: BacklogRow[], o: { csrf: string }): Html {
  return html`<div class="table-wrap"><table class="backlog">
    <caption class="sr-only">Backlog levels per recipe</caption>
    <thead><tr><th scope="col">Recipe</th><th scope="col">Provider</th><th scope="col" class="num">Min</th>
      <th scope="col" class="num">Ready</th><th scope="col" class="num">In flight</th><th scope="col">Level</th>
      <th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
    <tbody>${rows.map(
      (r) => html`<tr data-recipe-id="${r.id}">
        <th scope="row">${r.name} <span class="mono small muted">${r.id}</span></th>
        <td>${r.provider}</td>
        <td class="num" data-level="min">${r.min}</td>
        <td class="num" data-level="ready">${r.ready}</td>
        <td class="num" data-level="in-flight">${r.inFlight}</td>
        <td>${levelBar(r)}</td>
        <td>${state(r)}</td>
        <td><form method="post" action="/dashboard/backlog/${r.id}/top-up">${csrfField(o.csrf)}
          <button class="btn small" type="submit"${r.active ? "" : html` disabled`}>Top up now</button></form></td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}
