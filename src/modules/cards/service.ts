import type { Database } from "bun:sqlite";
import type { Config } from "../../config";
import type { Card } from "../../db/schema";
import { ApiError, notFound, unprocessable } from "../../errors";
import type { Queue } from "../../queue";
import {
  CardDataError,
  type ImageResolver,
  listTemplates,
  parseCardData,
  prepareCardData,
  type RenderedCard,
  UnknownTemplateError,
} from "../../render";
import { cardImageKey, cardImagePrefix, IMMUTABLE_CACHE_CONTROL, type Storage } from "../../storage";
import { type AuthService, isAdminKey, type Principal } from "../auth/service";
import { type IdempotentAnswer, NO_KEY } from "../idempotency/service";
import { mergePatch } from "./merge";
import type { CardView, CreateCardBody, ListCardsQuery } from "./model";

export type CardRenderer = { render(template: string, data: unknown): Promise<RenderedCard> };

export type CardDeps = {
  db: Database;
  queue: Queue;
  storage: Storage;
  auth: AuthService;
  renderer: CardRenderer;
  resolveImage: ImageResolver;
  config: Pick<Config, "publicUrl" | "CARD_DEBOUNCE_MS">;
  now?: () => number;
};

export const RENDER_JOB = "card.render";
export const CLEANUP_JOB = "card.cleanup";

type CardRow = Record<string, unknown>;

function toCard(r: CardRow): Card {
  return {
    id: r.id as string,
    ownerId: r.owner_id as string,
    template: r.template as string,
    data: JSON.parse(r.data as string),
    version: r.version as number,
    renderedVersion: r.rendered_version as number,
    imageKey: r.image_key as string | null,
    imageUrl: r.image_url as string | null,
    renderError: r.render_error ? JSON.parse(r.render_error as string) : null,
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
}

/** Template and schema problems are the caller's: 422 with the first bad field named. */
function asApiError(err: unknown): unknown {
  if (err instanceof UnknownTemplateError) return unprocessable(err.code, err.message);
  if (err instanceof CardDataError) {
    const issues = (err.details as { path: PropertyKey[]; message: string }[]).map((i) => ({
      path: i.path.map(String).join("."),
      message: i.message,
    }));
    const first = issues[0];
    return unprocessable(err.code, `data field '${first?.path ?? ""}': ${first?.message ?? "invalid"}`, {
      issues,
    });
  }
  return err;
}

function validate(template: string, data: unknown): unknown {
  try {
    return parseCardData(template, data);
  } catch (err) {
    throw asApiError(err);
  }
}

/**
 * Live share cards: a template plus data, rendered to a PNG at a cache-busted key on every change
 * (debounced through the queue's dedupe key `card:<id>`), with a stable URL that always serves the latest.
 */
export class CardService {
  readonly #d: CardDeps;
  readonly #now: () => number;

  constructor(deps: CardDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  templates() {
    return listTemplates();
  }

  view(card: Card): CardView {
    const status =
      card.renderError && card.renderedVersion < card.version
        ? "failed"
        : card.renderedVersion >= card.version
          ? "rendered"
          : "rendering";
    return {
      id: card.id,
      template: card.template,
      data: card.data as Record<string, unknown>,
      version: card.version,
      renderedVersion: card.renderedVersion,
      status,
      imageUrl: card.imageUrl,
      stableImageUrl: `${this.#d.config.publicUrl}/api/cards/${card.id}/image`,
      renderError: card.renderError,
      ownerId: card.ownerId,
      createdAt: card.createdAt,
      updatedAt: card.updatedAt,
    };
  }

  get(id: string): Card | null {
    const row = this.#d.db.query("SELECT * FROM cards WHERE id = ?").get(id) as CardRow | null;
    return row ? toCard(row) : null;
  }

  visible(p: Principal, id: string): Card {
    const card = this.get(id);
    if (!card || !this.#d.auth.canAccess(p, card.ownerId)) throw notFound("card");
    return card;
  }

  /** Creates a card and renders it at once, so the response carries its image URL. */
  /**
   * Renders the new card first, then inserts it pointing at its image, in one transaction that also records
   * `idem`'s answer: a crash leaves at most an unreferenced image (the orphan sweep's), never a card without
   * its key. A failed first render still creates the card; a queued render retries it with the engine's backoff.
   */
  async create(p: Principal, body: CreateCardBody, idem: IdempotentAnswer = NO_KEY) {
    validate(body.template, body.data);
    const owner = this.#d.auth.actingUser(p, body.userId);
    const now = this.#now();
    const id = Bun.randomUUIDv7();
    let image: { key: string; url: string } | null = null;
    let renderError: { code: string; message: string } | null = null;
    try {
      const prepared = await this.#prepare(body.template, body.data);
      const { png } = await this.#d.renderer.render(body.template, prepared);
      const key = cardImageKey(id, 1, now);
      await this.#d.storage.put(key, png, {
        contentType: "image/png",
        cacheControl: IMMUTABLE_CACHE_CONTROL,
      });
      image = { key, url: this.#d.storage.publicUrl(key) };
    } catch (err) {
      renderError = errorOf(err);
    }
    const view = this.#d.queue.store.tx(() => {
      this.#d.db
        .query(
          `INSERT INTO cards (id, owner_id, template, data, version, rendered_version, image_key, image_url,
             render_error, created_at, updated_at)
           VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          id,
          owner.id,
          body.template,
          JSON.stringify(body.data),
          image ? 1 : 0,
          image?.key ?? null,
          image?.url ?? null,
          renderError ? JSON.stringify(renderError) : null,
          now,
          now,
        );
      if (!image) this.#enqueueRender(id, 0);
      const created = this.view(this.get(id)!);
      idem.commit(created);
      return created;
    });
    if (image) {
      this.#d.queue.events.emit("card:rendered", {
        cardId: id,
        ownerId: owner.id,
        version: 1,
        imageUrl: image.url,
      });
    }
    return view;
  }

  /** Merges `patch` into the card's data, bumps the version and schedules a debounced render. */
  update(p: Principal, id: string, patch: Record<string, unknown>) {
    const card = this.visible(p, id);
    const data = mergePatch(card.data, patch);
    validate(card.template, data);
    const now = this.#now();
    const updated = this.#d.queue.store.tx(() => {
      const row = this.#d.db
        .query("UPDATE cards SET data = ?, version = version + 1, updated_at = ? WHERE id = ? RETURNING *")
        .get(JSON.stringify(data), now, id) as CardRow;
      this.#enqueueRender(id, this.#d.config.CARD_DEBOUNCE_MS);
      return toCard(row);
    });
    return this.view(updated);
  }

  list(p: Principal, q: ListCardsQuery) {
    const where = ["owner_id = ?"];
    const args: (string | number)[] = [p.user.id];
    if (isAdminKey(p)) {
      where.length = 0;
      args.length = 0;
    }
    if (q.template) {
      where.push("template = ?");
      args.push(q.template);
    }
    if (q.cursor) {
      where.push("id < ?");
      args.push(q.cursor);
    }
    const rows = this.#d.db
      .query(
        `SELECT * FROM cards ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`,
      )
      .all(...args, q.limit + 1) as CardRow[];
    const cards = rows.slice(0, q.limit).map((r) => this.view(toCard(r)));
    return { cards, nextCursor: rows.length > q.limit ? (cards.at(-1)?.id ?? null) : null };
  }

  async remove(p: Principal, id: string): Promise<void> {
    this.visible(p, id);
    this.#d.db.query("DELETE FROM cards WHERE id = ?").run(id);
    await this.#deleteObjects(id, null);
  }

  /**
   * Renders the card's current version to a new cache-busted key, points the card at it, and schedules the
   * removal of older images. A render that lost the race to a newer one removes its own image instead.
   * Returns false when there was nothing to render.
   */
  async render(id: string): Promise<boolean> {
    const card = this.get(id);
    if (!card || card.renderedVersion >= card.version) return false;
    const prepared = await this.#prepare(card.template, card.data);
    const { png } = await this.#d.renderer.render(card.template, prepared);
    const key = cardImageKey(card.id, card.version, this.#now());
    await this.#d.storage.put(key, png, { contentType: "image/png", cacheControl: IMMUTABLE_CACHE_CONTROL });
    const imageUrl = this.#d.storage.publicUrl(key);
    const res = this.#d.db
      .query(
        `UPDATE cards SET image_key = ?, image_url = ?, rendered_version = ?, render_error = NULL
         WHERE id = ? AND rendered_version < ?`,
      )
      .run(key, imageUrl, card.version, card.id, card.version);
    if (res.changes === 0) {
      await this.#d.storage.delete(key);
      return false;
    }
    this.#d.queue.events.emit("card:rendered", {
      cardId: card.id,
      ownerId: card.ownerId,
      version: card.version,
      imageUrl,
    });
    this.#d.queue.enqueue(
      CLEANUP_JOB,
      { cardId: card.id },
      { dedupeKey: `card-cleanup:${card.id}`, debounceMs: 500 },
    );
    return true;
  }

  /** Deletes every stored image of the card except the one it points at now. */
  async cleanup(id: string): Promise<number> {
    return this.#deleteObjects(id, this.get(id)?.imageKey ?? null);
  }

  /** Records a render that failed for good, so the card's view and image endpoint say so. */
  renderFailed(id: string, error: unknown): void {
    this.#d.db.query("UPDATE cards SET render_error = ? WHERE id = ?").run(JSON.stringify(error), id);
  }

  /** The latest image for the stable URL, or null when none is rendered yet. */
  async latestImage(id: string) {
    const card = this.get(id);
    if (!card) throw notFound("card");
    if (!card.imageKey) return { card, object: null };
    return { card, object: await this.#d.storage.get(card.imageKey) };
  }

  /** Renders without storing anything (template design). */
  async preview(template: string, data: unknown): Promise<Uint8Array> {
    return (await this.#d.renderer.render(template, await this.#prepare(template, data))).png;
  }

  async #prepare(template: string, data: unknown): Promise<unknown> {
    try {
      return await prepareCardData(template, data, this.#d.resolveImage);
    } catch (err) {
      throw asApiError(err);
    }
  }

  #enqueueRender(id: string, debounceMs: number): void {
    this.#d.queue.enqueue(RENDER_JOB, { cardId: id }, { dedupeKey: `card:${id}`, debounceMs, priority: 5 });
  }

  async #deleteObjects(id: string, keep: string | null): Promise<number> {
    const keys: string[] = [];
    for await (const obj of this.#d.storage.list(cardImagePrefix(id)))
      if (obj.key !== keep) keys.push(obj.key);
    if (keys.length) await this.#d.storage.deleteMany(keys);
    return keys.length;
  }
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  return { code: "render_failed", message: err instanceof Error ? err.message : String(err) };
}
