import type { Config } from "../../config";
import type { Card, Job } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { ApiError, notFound, unprocessable } from "../../errors";
import { EventBus, type Queue } from "../../queue";
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
import { CardRepository } from "./repository";

export type CardRenderer = { render(template: string, data: unknown): Promise<RenderedCard> };

export type CardDeps = {
  sql: Sql;
  queue: Queue;
  storage: Storage;
  auth: AuthService;
  renderer: CardRenderer;
  resolveImage: ImageResolver;
  config: Pick<Config, "publicUrl" | "CARD_DEBOUNCE_MS" | "CARD_SUPERSEDED_GRACE_MS">;
  now?: () => number;
};

/** What a live card tells the rest of the server (realtime, webhooks); the queue knows nothing of cards. */
export type CardEvents = {
  /** A live card has a new image. */
  "card:rendered": { cardId: string; ownerId: string; version: number; imageUrl: string };
};

export const RENDER_JOB = "card.render";
export const CLEANUP_JOB = "card.cleanup";
/** Above the default 0: a live card is watched, and the cleanup after it keeps storage bounded. */
const RENDER_PRIORITY = 5;

/** The version in a key from cardImageKey (`cards/<id>-<version>-<ts>.png`), or undefined for another shape. */
function versionOfKey(id: string, key: string): number | undefined {
  const match = /^(\d+)-\d+\.png$/.exec(key.slice(cardImagePrefix(id).length));
  return match ? Number(match[1]) : undefined;
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
  readonly #deps: CardDeps;
  readonly #cards: CardRepository;
  readonly #now: () => number;
  /** `card:rendered` after each render that moved a card's pointer. */
  readonly events = new EventBus<CardEvents>();

  constructor(deps: CardDeps) {
    this.#deps = deps;
    this.#cards = new CardRepository(deps.sql);
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
      stableImageUrl: `${this.#deps.config.publicUrl}/api/cards/${card.id}/image`,
      renderError: card.renderError,
      ownerId: card.ownerId,
      createdAt: card.createdAt,
      updatedAt: card.updatedAt,
    };
  }

  get(id: string): Promise<Card | null> {
    return this.#cards.get(id);
  }

  async visible(p: Principal, id: string): Promise<Card> {
    const card = await this.get(id);
    if (!card || !(await this.#deps.auth.canAccess(p, card.ownerId))) throw notFound("card");
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
    const owner = await this.#deps.auth.actingUser(p, body.userId);
    const now = this.#now();
    const id = Bun.randomUUIDv7();
    let image: { key: string; url: string } | null = null;
    let renderError: Card["renderError"] = null;
    try {
      const prepared = await this.#prepare(body.template, body.data);
      const { png } = await this.#deps.renderer.render(body.template, prepared);
      const key = cardImageKey(id, 1, now);
      await this.#deps.storage.put(key, png, {
        contentType: "image/png",
        cacheControl: IMMUTABLE_CACHE_CONTROL,
      });
      image = { key, url: this.#deps.storage.publicUrl(key) };
    } catch (err) {
      renderError = errorOf(err) as Card["renderError"];
    }
    const card: Card = {
      id,
      ownerId: owner.id,
      template: body.template,
      data: body.data,
      version: 1,
      renderedVersion: image ? 1 : 0,
      imageKey: image?.key ?? null,
      imageUrl: image?.url ?? null,
      renderDueAt: now,
      renderError,
      createdAt: now,
      updatedAt: now,
    };
    const view = await this.#deps.queue.transaction(async () => {
      await this.#cards.insert(card);
      // A failed first render: the card exists, a queued render retries with the engine's backoff, and the
      // view says "rendering".
      if (!image) await this.#enqueueRender(id, now);
      const created = this.view(card);
      await idem.commit(created);
      return created;
    });
    if (image) {
      this.events.emit("card:rendered", {
        cardId: id,
        ownerId: owner.id,
        version: 1,
        imageUrl: image.url,
      });
    }
    return view;
  }

  /**
   * Merges `patch` into the card's data, bumps the version and schedules a render: at once when the card's
   * last render was due more than CARD_DEBOUNCE_MS ago (leading edge), else at the end of that render's
   * window, where every change until then coalesces into one render of the latest data (trailing edge).
   */
  async update(p: Principal, id: string, patch: Record<string, unknown>) {
    const card = await this.visible(p, id);
    const data = mergePatch(card.data, patch);
    validate(card.template, data);
    const now = this.#now();
    const updated = await this.#deps.queue.transaction(async () => {
      const windowEnd = (card.renderDueAt ?? 0) + this.#deps.config.CARD_DEBOUNCE_MS;
      // A render already queued keeps its start time (the dedupe upsert never moves run_at), so the time
      // recorded is the queued job's: the window is measured from the render that will actually run.
      const job = await this.#enqueueRender(id, Math.max(now, windowEnd));
      const bumped = await this.#cards.bump(id, data, job.runAt, now);
      if (!bumped) throw notFound("card");
      return bumped;
    });
    return this.view(updated);
  }

  async list(p: Principal, q: ListCardsQuery) {
    const rows = await this.#cards.page({
      ownerId: isAdminKey(p) ? null : p.user.id,
      template: q.template ?? null,
      before: q.cursor ?? null,
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit).map((card) => this.view(card));
    return { cards: page, nextCursor: rows.length > q.limit ? (page.at(-1)?.id ?? null) : null };
  }

  async remove(p: Principal, id: string): Promise<void> {
    await this.visible(p, id);
    await this.#cards.delete(id);
    await this.#deleteObjects(id, () => true);
  }

  /**
   * Renders the card's current version to a new cache-busted key, points the card at it, then deletes the
   * image it superseded. A render that lost the race to a newer one removes its own image instead.
   * Returns false when there was nothing to render.
   */
  async render(id: string): Promise<boolean> {
    const card = await this.get(id);
    if (!card || card.renderedVersion >= card.version) return false;
    const prepared = await this.#prepare(card.template, card.data);
    const { png } = await this.#deps.renderer.render(card.template, prepared);
    const key = cardImageKey(card.id, card.version, this.#now());
    await this.#deps.storage.put(key, png, {
      contentType: "image/png",
      cacheControl: IMMUTABLE_CACHE_CONTROL,
    });
    const imageUrl = this.#deps.storage.publicUrl(key);
    const pointed = await this.#point(card, key, imageUrl);
    if (!pointed) {
      await this.#deps.storage.delete(key);
      return false;
    }
    this.events.emit("card:rendered", {
      cardId: card.id,
      ownerId: card.ownerId,
      version: card.version,
      imageUrl,
    });
    await this.#dropSuperseded(card.id, pointed.previousKey, card.version);
    return true;
  }

  /**
   * Deletes the card's stored images older than `beforeVersion` (default: the version it shows now). Newer
   * versions are left alone: their render may have stored its file and not yet moved the pointer.
   */
  async cleanup(id: string, beforeVersion?: number): Promise<number> {
    const card = await this.get(id);
    if (!card) return this.#deleteObjects(id, () => true);
    const before = beforeVersion ?? card.renderedVersion;
    return this.#deleteObjects(
      id,
      (key) => key !== card.imageKey && (versionOfKey(id, key) ?? Number.POSITIVE_INFINITY) < before,
    );
  }

  /** Records a render that failed for good, so the card's view and image endpoint say so. */
  renderFailed(id: string, error: unknown): Promise<void> {
    return this.#cards.renderFailed(id, error);
  }

  /** The latest image for the stable URL, or null when none is rendered yet. */
  async latestImage(id: string) {
    const card = await this.get(id);
    if (!card) throw notFound("card");
    if (!card.imageKey) return { card, object: null };
    return { card, object: await this.#deps.storage.get(card.imageKey) };
  }

  /** Renders without storing anything (template design). */
  async preview(template: string, data: unknown): Promise<Uint8Array> {
    return (await this.#deps.renderer.render(template, await this.#prepare(template, data))).png;
  }

  async #prepare(template: string, data: unknown): Promise<unknown> {
    try {
      return await prepareCardData(template, data, this.#deps.resolveImage);
    } catch (err) {
      throw asApiError(err);
    }
  }

  async #enqueueRender(id: string, runAt: number): Promise<Job> {
    const { job } = await this.#deps.queue.enqueue(
      RENDER_JOB,
      { cardId: id },
      { dedupeKey: `card:${id}`, runAt, priority: RENDER_PRIORITY },
    );
    return job;
  }

  /**
   * Moves the card's pointer to `key` unless a newer version got there first, and returns the key it
   * replaced. Read and write share one transaction, so two renders finishing together each learn the key
   * they replaced and no superseded image is missed or deleted twice.
   */
  #point(card: Card, key: string, imageUrl: string): Promise<{ previousKey: string | null } | null> {
    return this.#deps.sql.transaction(async () => {
      const previousKey = await this.#cards.imageKey(card.id);
      const moved = await this.#cards.point(card.id, card.version, key, imageUrl);
      return moved ? { previousKey } : null;
    });
  }

  /**
   * Superseded images go as soon as the pointer has moved, so a card keeps one file (two while a render is
   * in flight). With CARD_SUPERSEDED_GRACE_MS, or when the delete fails, a durable `card.cleanup` job does it
   * later instead: caches that fetched the old versioned URL keep it for the grace period.
   */
  async #dropSuperseded(id: string, previousKey: string | null, version: number): Promise<void> {
    if (!previousKey) return;
    const grace = this.#deps.config.CARD_SUPERSEDED_GRACE_MS;
    if (grace === 0) {
      try {
        await this.#deps.storage.delete(previousKey);
        return;
      } catch {
        // the store is unavailable for now: the cleanup job below retries with backoff
      }
    }
    await this.#deps.queue.enqueue(
      CLEANUP_JOB,
      { cardId: id, beforeVersion: version },
      { delayMs: grace, priority: RENDER_PRIORITY },
    );
  }

  async #deleteObjects(id: string, shouldDelete: (key: string) => boolean): Promise<number> {
    const keys: string[] = [];
    for await (const obj of this.#deps.storage.list(cardImagePrefix(id)))
      if (shouldDelete(obj.key)) keys.push(obj.key);
    if (keys.length) await this.#deps.storage.deleteMany(keys);
    return keys.length;
  }
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  return { code: "render_failed", message: err instanceof Error ? err.message : String(err) };
}
