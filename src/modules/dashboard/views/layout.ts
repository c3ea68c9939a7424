import type { User } from "../../../db/schema";
import { type Html, html } from "../html";
import { csrfField } from "./parts";

export type PageName = "overview" | "jobs" | "backlog" | "cards" | "webhooks" | "keys";

export type Viewer = { user: User; csrf: string };

const NAV: [PageName, string, string][] = [
  ["overview", "Overview", "/dashboard"],
  ["jobs", "Jobs", "/dashboard/jobs"],
  ["backlog", "Backlog", "/dashboard/backlog"],
  ["cards", "Cards", "/dashboard/cards"],
  ["webhooks", "Webhooks", "/dashboard/webhooks"],
  ["keys", "Keys", "/dashboard/keys"],
];

const LOGO = html`<svg class="logo" viewBox="0 0 32 32" aria-hidden="true" focusable="false">
  <rect x="2" y="2" width="28" height="28" rx="8" class="logo-bg"/>
  <path d="M9 22 L14 12 L18 19 L20.5 15.5 L24 22 Z" class="logo-fg"/>
  <circle cx="21.5" cy="10.5" r="2.2" class="logo-fg"/>
</svg>`;

function head(title: string): Html {
  return html`<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <meta name="robots" content="noindex">
  <title>${title} · Easel</title>
  <link rel="icon" href="/favicon.svg" type="image/svg+xml">
  <link rel="icon" href="/favicon.ico" sizes="32x32">
  <link rel="stylesheet" href="/dashboard/assets/app.css">
  <script src="/dashboard/assets/app.js" defer></script>
</head>`;
}

/** A signed-in page: top bar with navigation and sign-out, then the page's content. */
export function layout(
  o: { title: string; page: PageName | null; viewer: Viewer; live?: boolean },
  body: Html,
): Html {
  const { user, csrf } = o.viewer;
  return html`<!doctype html>
<html lang="en">
${head(o.title)}
<body data-csrf="${csrf}"${o.live ? html` data-live` : ""}>
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
  <div class="topbar-inner">
    <a class="brand" href="/dashboard">${LOGO}<span>Easel</span></a>
    <nav class="nav" aria-label="Main">
      ${NAV.map(
        ([name, label, href]) =>
          html`<a href="${href}"${name === o.page ? html` aria-current="page"` : ""}>${label}</a>`,
      )}
    </nav>
    <div class="account">
      <span class="who" title="${user.id}">${user.name} <span class="role">${user.role}</span></span>
      <form method="post" action="/dashboard/logout">${csrfField(csrf)}<button class="btn ghost small" type="submit">Sign out</button></form>
    </div>
  </div>
</header>
<main id="main" class="container">
  <div class="page-head">
    <h1>${o.title}</h1>
    <div class="page-actions">
      ${o.live ? html`<span class="live" data-live-indicator role="status" aria-live="polite">Connecting…</span>` : ""}
    </div>
  </div>
  ${body}
</main>
</body>
</html>`;
}

/** The sign-in page (no session yet). */
export function signInPage(o: { error?: string }): Html {
  return html`<!doctype html>
<html lang="en">
${head("Sign in")}
<body class="signin-body">
<main id="main" class="signin">
  <div class="signin-card">
    <div class="brand brand-lg">${LOGO}<span>Easel</span></div>
    <h1>Sign in to the dashboard</h1>
    <p class="muted">Use an admin key, or an app key to see that app's users.</p>
    ${o.error && html`<p class="alert error" role="alert">${o.error}</p>`}
    <form method="post" action="/dashboard/login" class="stack">
      <label for="key">API key</label>
      <input id="key" name="key" type="password" autocomplete="current-password" required
        placeholder="esk_…" spellcheck="false" autofocus>
      <button class="btn primary" type="submit">Sign in</button>
    </form>
  </div>
</main>
</body>
</html>`;
}

/** A full error page for a signed-in viewer (not found, forbidden). */
export function errorPage(viewer: Viewer, title: string, message: string): Html {
  return layout(
    { title, page: null, viewer },
    html`<section class="panel"><p>${message}</p><p><a href="/dashboard">Back to the overview</a></p></section>`,
  );
}
