import type { User } from "../../../db/schema";
import type { KeyStatus, KeyView } from "../../auth/model";
import { ADMIN_KEY_NAME } from "../../auth/service";
import { type Html, html } from "../html";
import { badge, csrfField, emptyState, time } from "./parts";

/** Lifetimes offered by the create form, in seconds ("" never expires). */
export const KEY_LIFETIMES: [seconds: string, label: string][] = [
  ["", "Never"],
  [String(7 * 86_400), "7 days"],
  [String(30 * 86_400), "30 days"],
  [String(90 * 86_400), "90 days"],
  [String(365 * 86_400), "1 year"],
];

const STATUS_BADGE: Record<KeyStatus, string> = {
  active: "completed",
  expired: "partial",
  revoked: "cancelled",
};

export type KeysData = {
  /** Whose keys are shown. */
  owner: User;
  /** The viewer may name another user (admins: anyone; apps: their end users). */
  canChooseUser: boolean;
  /** What the user filter says, when it names someone. */
  userRef?: string;
  keys: KeyView[];
  csrf: string;
  notice?: string;
  /** A key just created or rotated: shown this once. */
  created?: { key: string; view: KeyView; rotatedFrom: string | null };
};

function userForm(d: KeysData): Html {
  return html`<form class="filters" method="get" action="/dashboard/keys" role="search" aria-label="Whose keys">
    <div class="field grow">
      <label for="k-user">User</label>
      <input id="k-user" name="user" value="${d.userRef ?? ""}" placeholder="yourself, or a user's external or internal id" spellcheck="false">
    </div>
    <div class="field buttons">
      <button class="btn primary" type="submit">Show keys</button>
      <a class="btn ghost" href="/dashboard/keys">Mine</a>
    </div>
  </form>`;
}

function createForm(d: KeysData): Html {
  return html`<form class="filters" method="post" action="/dashboard/keys" aria-label="Create a key">
    ${csrfField(d.csrf)}
    <input type="hidden" name="user" value="${d.userRef ?? ""}">
    <div class="field grow">
      <label for="k-name">New key for ${d.owner.externalId ?? d.owner.name}</label>
      <input id="k-name" name="name" required maxlength="100" placeholder="What it is for, e.g. production">
    </div>
    <div class="field">
      <label for="k-expires">Expires after</label>
      <select id="k-expires" name="expiresInSeconds">
        ${KEY_LIFETIMES.map(([value, label]) => html`<option value="${value}">${label}</option>`)}
      </select>
    </div>
    <div class="field buttons"><button class="btn primary" type="submit">Create key</button></div>
  </form>`;
}

function createdNotice(c: NonNullable<KeysData["created"]>): Html {
  return html`<section class="alert new-key" role="status" aria-labelledby="new-key-h">
    <h2 id="new-key-h">${c.rotatedFrom ? "Key rotated" : "Key created"}: ${c.view.name}</h2>
    <p>Copy it now: it is shown this once and cannot be read again.${c.rotatedFrom ? " The old key no longer works." : ""}</p>
    <label for="new-key">API key</label>
    <input id="new-key" class="mono secret" readonly value="${c.key}" data-new-key spellcheck="false">
  </section>`;
}

function actions(k: KeyView, csrf: string): Html {
  if (k.status === "revoked") return html`<span class="muted">—</span>`;
  // The ADMIN_KEY variable's key is replaced by changing the variable; rotating it here is refused.
  const rotate =
    k.name === ADMIN_KEY_NAME
      ? html`<span class="small muted">set by ADMIN_KEY</span>`
      : html`<form method="post" action="/dashboard/keys/${k.id}/rotate">${csrfField(csrf)}
      <button class="btn small" type="submit" aria-label="Rotate ${k.name}">Rotate</button></form>`;
  return html`<div class="actions">
    ${rotate}
    <form method="post" action="/dashboard/keys/${k.id}/revoke">${csrfField(csrf)}
      <button class="btn small danger" type="submit" aria-label="Revoke ${k.name}">Revoke</button></form>
  </div>`;
}

function keyTable(d: KeysData): Html {
  if (d.keys.length === 0) return emptyState("No keys", "Create one with the form above.");
  return html`<div class="table-wrap"><table class="keys">
    <caption class="sr-only">API keys, newest first</caption>
    <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Status</th>
      <th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Expires</th>
      <th scope="col">Revoked</th><th scope="col">Actions</th></tr></thead>
    <tbody>${d.keys.map(
      (k) => html`<tr data-key-id="${k.id}" data-status="${k.status}">
        <td>${k.name}</td>
        <td><span class="mono">${k.prefix}…</span></td>
        <td>${badge(STATUS_BADGE[k.status], k.status)}</td>
        <td>${time(k.createdAt)}</td>
        <td>${k.lastUsedAt ? time(k.lastUsedAt) : html`<span class="muted">never</span>`}</td>
        <td>${k.expiresAt ? time(k.expiresAt) : html`<span class="muted">never</span>`}</td>
        <td>${time(k.revokedAt)}</td>
        <td>${actions(k, d.csrf)}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

export function keysPage(d: KeysData): Html {
  return html`${d.created && createdNotice(d.created)}
  ${d.notice && html`<p class="alert" role="status">${d.notice}</p>`}
  ${d.canChooseUser ? userForm(d) : ""}
  ${createForm(d)}
  <section class="panel flush" aria-label="Keys of ${d.owner.name}">${keyTable(d)}</section>`;
}
