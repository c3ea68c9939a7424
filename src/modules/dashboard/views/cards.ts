import type { CardService } from "../../cards/service";
import { type Html, html } from "../html";
import { badge, emptyState, time } from "./parts";

type CardView = ReturnType<CardService["view"]>;

function title(card: CardView): string {
  const data = card.data as { question?: unknown; title?: unknown };
  const text =
    typeof data.question === "string" ? data.question : typeof data.title === "string" ? data.title : "";
  return text || card.template;
}

export function cardGrid(cards: CardView[]): Html {
  if (cards.length === 0) return emptyState("No cards yet", "Create one with POST /api/cards.");
  return html`<ul class="cards">${cards.map(
    (c) => html`<li class="card-tile" data-card-id="${c.id}">
      <a href="${c.stableImageUrl}" target="_blank" rel="noopener" class="card-img">
        <img src="${c.stableImageUrl}?v=${c.renderedVersion}" alt="${title(c)}" width="1200" height="800" loading="lazy">
      </a>
      <div class="card-meta">
        <p class="card-title">${title(c)}</p>
        <p class="small muted"><span class="tag">${c.template}</span> v${c.version} ${badge(c.status)}</p>
        <p class="small muted">Updated ${time(c.updatedAt)}</p>
      </div>
    </li>`,
  )}</ul>`;
}

export function cardsPage(cards: CardView[]): Html {
  return html`<div data-fragment="/dashboard/fragments/cards" data-refresh-ms="5000">${cardGrid(cards)}</div>`;
}
