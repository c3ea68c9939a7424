import type { Config } from "../../config";
import type { Job, User } from "../../db/schema";
import { ApiError, unprocessable, urlNotAllowed } from "../../errors";
import { ImageError } from "../../images/errors";
import { type OutputPresetInput, resolvePreset } from "../../images/presets";
import { type ImageInput, validateEditInputs } from "../../images/validate";
import { assertPublicUrl, UrlGuardError } from "../../net/url-guard";
import { checkRequest, DEFAULT_SIZE } from "../../providers/capabilities";
import { ProviderError } from "../../providers/errors";
import type { ProviderRegistry } from "../../providers/registry";
import type { ProviderInfo } from "../../providers/types";
import type { EnqueueOptions, Queue } from "../../queue";
import type { Storage } from "../../storage";
import type { AuthService, Principal } from "../auth/service";
import { type IdempotentAnswer, NO_KEY } from "../idempotency/service";
import { Admission } from "./admission";
import { GENERATE_JOB, SINGLE_ITEM_KEY } from "./job";
import type { GenerateBody, GenerateItemInput, GenerateJobInput, RecipeVariables } from "./model";

export type { Admission, QueueUsage } from "./admission";
// The generate job's type and the asset rows are part of this module's public face.
export type { AssetService, AssetView } from "./assets";
export { GENERATE_JOB, SINGLE_ITEM_KEY } from "./job";
export {
  type GenerationRequestDetail,
  type GenerationRequestSummary,
  generationRequest,
  generationSummary,
  isGeneration,
} from "./view";

/** A generate request after parsing, from JSON or multipart (input images may be raw bytes). */
export type GenerateRequest = Omit<GenerateBody, "image" | "mask"> & {
  image?: ImageInput;
  mask?: ImageInput;
};

export type GenerateDeps = {
  config: Pick<
    Config,
    | "publicUrl"
    | "ALLOW_PRIVATE_URLS"
    | "MAX_INPUT_IMAGE_BYTES"
    | "ITEM_TIMEOUT_MS"
    | "BATCH_CONCURRENCY"
    | "JOB_MAX_ATTEMPTS"
    | "MAX_QUEUED_PER_OWNER"
    | "MAX_QUEUE_DEPTH"
  >;
  queue: Queue;
  providers: ProviderRegistry;
  storage: Storage;
  auth: AuthService;
  /** Resolves `recipeId` + `variables` requests (modules/recipes); without it they are refused. */
  recipes?: RecipeExpander;
};

/** A recipe applied to a request: its rendered prompt and the generation settings it fixes. */
export type RecipeExpansion = {
  recipeId: string;
  /** The validated variable values (defaults filled in), as recorded in recipe usage. */
  values: Record<string, string | number>;
  prompt: string;
  provider: string;
  model: string | null;
  negativePrompt: string | null;
  output: GenerateBody["output"] | null;
  size: string | null;
  /** Credits per image. */
  creditCost: number;
};

/** Throws an ApiError for an unknown or inactive recipe (404) or bad variables (422). */
export type RecipeExpander = (
  recipeId: string,
  variables: RecipeVariables | undefined,
) => Promise<RecipeExpansion>;

/**
 * Hooks later features attach to a generation's enqueue, inside its transaction (credits, recipe usage):
 * they may add enqueue options (e.g. creditsCharged) or throw an ApiError to refuse.
 */
export type EnqueueHookContext = {
  owner: User;
  request: GenerateRequest;
  itemCount: number;
  imageCount: number;
  provider: string;
  recipe?: RecipeExpansion;
};
export type EnqueueHook = (ctx: EnqueueHookContext) => Partial<EnqueueOptions> | undefined;

/** Runs after the job row is inserted, still inside its transaction (ledger rows that name the job). */
export type EnqueuedHook = (
  ctx: EnqueueHookContext & {
    job: Job;
    deduped: boolean;
    /** When deduped: what the replaced request had been charged (its replacement is priced anew). */
    previousCharge: number;
  },
) => Promise<void> | void;

/** A one-prompt generation queued by the system itself (the backlog). */
export type DirectGeneration = {
  ownerId: string;
  recipeId: string | null;
  provider: string;
  model: string | null;
  prompt: string;
  negativePrompt: string | null;
  output: GenerateBody["output"];
  size: string;
  priority: number;
  metadata: Record<string, unknown>;
};

/** Turns a generate request into a queued `generate` job, validating everything first. */
export class GenerateService {
  readonly #d: GenerateDeps;
  readonly #hooks: EnqueueHook[] = [];
  readonly #enqueued: EnqueuedHook[] = [];
  /** Back-pressure on user generations (limits, refusals, usage for the status views). */
  readonly admission: Admission;

  constructor(deps: GenerateDeps) {
    this.#d = deps;
    this.admission = new Admission(deps.queue, deps.config);
  }

  onEnqueue(hook: EnqueueHook): void {
    this.#hooks.push(hook);
  }

  onEnqueued(hook: EnqueuedHook): void {
    this.#enqueued.push(hook);
  }

  /** Validates, stores input images, then charges and enqueues in one transaction that also records `idem`'s answer. */
  async submit(p: Principal, request: GenerateRequest, idem: IdempotentAnswer = NO_KEY) {
    const { queue, providers, config } = this.#d;
    const owner = await this.#d.auth.actingUser(p, request.userId);
    const recipe = request.recipeId ? await this.#expand(request.recipeId, request.variables) : undefined;
    const req = recipe ? withRecipe(request, recipe) : request;
    const providerName = req.provider ?? providers.defaultName;
    const provider = lookup(() => providers.get(providerName));
    const warnings = checkCapabilities(provider.info, req);
    checkPreset(req.output);
    if (req.webhookUrl) await this.#checkUrl(req.webhookUrl);
    // After validation (a bad request hears what is wrong with it), before input images are stored or
    // anything is charged.
    await this.admission.admit(owner);

    let imageKey: string | undefined;
    let maskKey: string | undefined;
    if (req.image !== undefined) {
      if (!provider.info.supportsEdits) {
        throw unprocessable("edits_not_supported", `provider "${providerName}" does not take input images`);
      }
      const { image, mask } = await validateEditInputs(
        { image: req.image, ...(req.mask !== undefined && { mask: req.mask }) },
        { maxBytes: config.MAX_INPUT_IMAGE_BYTES },
      ).catch(rethrowImageError);
      const folder = `inputs/${Bun.randomUUIDv7()}`;
      imageKey = `${folder}/image.${image.format === "jpeg" ? "jpg" : image.format}`;
      if (mask) maskKey = `${folder}/mask.${mask.format === "jpeg" ? "jpg" : mask.format}`;
      try {
        await this.#d.storage.put(imageKey, image.bytes, { contentType: image.mime });
        if (mask && maskKey) await this.#d.storage.put(maskKey, mask.bytes, { contentType: mask.mime });
      } catch (err) {
        // A store that took the image but refused the mask must not keep the image: nothing half-written.
        this.#dropInputs([imageKey, maskKey]);
        throw err;
      }
    }

    const items = (req.items ?? [{ id: SINGLE_ITEM_KEY, prompt: req.prompt! }]).map((i) => ({
      key: i.id,
      input: itemInput(i),
    }));
    const input: GenerateJobInput = {
      provider: providerName,
      size: req.size ?? DEFAULT_SIZE,
      n: req.n,
      output: req.output,
      ...(req.size === undefined && { autoSize: true }),
      ...(warnings.length > 0 && { warnings }),
      ...(req.model && { model: req.model }),
      ...(req.seed !== undefined && { seed: req.seed }),
      ...(req.negativePrompt && { negativePrompt: req.negativePrompt }),
      ...(req.params && { params: req.params }),
      ...(imageKey && { imageKey }),
      ...(maskKey && { maskKey }),
    };
    const imageCount = items.reduce((sum, i) => sum + ((i.input as GenerateItemInput).n ?? req.n), 0);
    return this.#enqueueOrDropInputs([imageKey, maskKey], () =>
      queue.transaction(async () => {
        const hookCtx: EnqueueHookContext = {
          owner,
          request: req,
          itemCount: items.length,
          imageCount,
          provider: providerName,
          recipe,
        };
        let extra: Partial<EnqueueOptions> = {};
        for (const hook of this.#hooks) extra = { ...extra, ...hook(hookCtx) };
        const out = await queue.enqueue(GENERATE_JOB, input, {
          items,
          ownerId: owner.id,
          priority: req.priority,
          // Keys are the caller's own: another owner's same key must never replace this owner's job.
          dedupeKey: req.dedupeKey ? ownedDedupeKey(owner.id, req.dedupeKey) : undefined,
          webhookUrl: req.webhookUrl ?? null,
          timeoutMs: this.#jobTimeout(items.length),
          metadata: recipe ? { ...req.metadata, recipeVariables: recipe.values } : (req.metadata ?? null),
          recipeId: recipe?.recipeId ?? null,
          inputKeys: [imageKey, maskKey].filter((k) => k !== undefined),
          ...extra,
        });
        for (const hook of this.#enqueued) {
          await hook({ ...hookCtx, job: out.job, deduped: out.deduped, previousCharge: out.previousCharge });
        }
        const accepted = {
          jobId: out.job.id,
          status: out.job.status,
          message: `queued ${items.length} item${items.length === 1 ? "" : "s"} on ${providerName}`,
          statusUrl: `${config.publicUrl}/api/jobs/${out.job.id}/status`,
          websocketSubscription: `job:${out.job.id}`,
          totalItems: items.length,
          ...(warnings.length > 0 && { warnings }),
        };
        await idem.commit(accepted);
        return accepted;
      }),
    );
  }

  /** Runs the enqueue; when it is refused (402, 409, 422 …) the input images stored for it are deleted. */
  async #enqueueOrDropInputs<T>(keys: (string | undefined)[], enqueue: () => Promise<T>): Promise<T> {
    try {
      return await enqueue();
    } catch (err) {
      this.#dropInputs(keys);
      throw err;
    }
  }

  #dropInputs(keys: (string | undefined)[]): void {
    for (const key of keys) {
      if (key) void this.#d.storage.delete(key).catch(() => undefined);
    }
  }

  /**
   * Queues a generation for system work in the caller's transaction: no acting user and no enqueue hooks,
   * so nothing is charged and nothing counts as a user's choice.
   */
  async enqueueDirect(g: DirectGeneration): Promise<Job> {
    lookup(() => this.#d.providers.get(g.provider));
    checkPreset(g.output);
    const input: GenerateJobInput = {
      provider: g.provider,
      size: g.size,
      n: 1,
      output: g.output,
      ...(g.model && { model: g.model }),
      ...(g.negativePrompt && { negativePrompt: g.negativePrompt }),
    };
    const { job } = await this.#d.queue.enqueue(GENERATE_JOB, input, {
      items: [{ key: SINGLE_ITEM_KEY, input: itemInput({ prompt: g.prompt }) }],
      ownerId: g.ownerId,
      recipeId: g.recipeId,
      priority: g.priority,
      timeoutMs: this.#jobTimeout(1),
      metadata: g.metadata,
    });
    return job;
  }

  #expand(recipeId: string, variables: RecipeVariables | undefined): Promise<RecipeExpansion> {
    if (!this.#d.recipes)
      throw unprocessable("recipes_unavailable", "recipes are not enabled on this server");
    return this.#d.recipes(recipeId, variables);
  }

  /** Long enough for every item's attempts to run in the job's parallel lanes, plus slack. */
  #jobTimeout(items: number): number {
    const { ITEM_TIMEOUT_MS, BATCH_CONCURRENCY } = this.#d.config;
    const rounds = Math.ceil(items / BATCH_CONCURRENCY);
    return rounds * ITEM_TIMEOUT_MS * 3 + 60_000;
  }

  async #checkUrl(url: string): Promise<void> {
    try {
      await assertPublicUrl(url, { allowPrivate: this.#d.config.ALLOW_PRIVATE_URLS });
    } catch (err) {
      if (err instanceof UrlGuardError) throw urlNotAllowed(err.message, err.reason);
      throw err;
    }
  }
}

/** A generation's dedupe key in the queue: scoped to its owner (the view strips the scope again). */
export const ownedDedupeKey = (ownerId: string, key: string) => `${ownerId}:${key}`;

/** The request with the recipe's prompt and settings in place of the caller's. */
function withRecipe(req: GenerateRequest, r: RecipeExpansion): GenerateRequest {
  return {
    ...req,
    prompt: r.prompt,
    provider: r.provider,
    model: r.model ?? undefined,
    negativePrompt: r.negativePrompt ?? req.negativePrompt,
    output: r.output ?? req.output,
    size: r.size ?? req.size,
  };
}

function itemInput(i: {
  prompt: string;
  negativePrompt?: string;
  size?: string;
  n?: number;
  seed?: number;
}): GenerateItemInput {
  return {
    prompt: i.prompt,
    ...(i.negativePrompt && { negativePrompt: i.negativePrompt }),
    ...(i.size && { size: i.size }),
    ...(i.n !== undefined && { n: i.n }),
    ...(i.seed !== undefined && { seed: i.seed }),
  };
}

/**
 * Refuses (422, before anything is stored or charged) what the model cannot do, naming what it can; returns
 * the warnings to record when the model is outside the provider's table and runs unchecked.
 */
function checkCapabilities(info: ProviderInfo, req: GenerateRequest): string[] {
  const verdict = checkRequest(info, req.model, {
    size: req.size,
    negativePrompt: req.negativePrompt,
    seed: req.seed,
    hasImage: req.image !== undefined,
    hasMask: req.mask !== undefined,
    params: req.params,
    items: req.items,
  });
  if (verdict.problems.length > 0) {
    const others = verdict.alternatives?.length
      ? `; ${info.name} models that take this request: ${verdict.alternatives.join(", ")}`
      : "";
    throw new ApiError(
      422,
      "unsupported_by_model",
      `${verdict.model} on ${info.name} does not take ${verdict.problems.join("; ")}${others}`,
      {
        details: {
          provider: info.name,
          model: verdict.model,
          problems: verdict.problems,
          supports: verdict.capabilities,
          alternatives: verdict.alternatives ?? [],
        },
      },
    );
  }
  return verdict.warning ? [verdict.warning] : [];
}

/** images/ refuses a user's image or preset in its own terms; over HTTP that is a 422 with the same code. */
function rethrowImageError(err: unknown): never {
  if (err instanceof ImageError) throw unprocessable(err.code, err.message, err.details);
  throw err;
}

function checkPreset(ref: string | OutputPresetInput): void {
  try {
    resolvePreset(ref);
  } catch (err) {
    rethrowImageError(err);
  }
}

/** A provider lookup's failure is a 422 over HTTP, with the same code. */
function lookup<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ProviderError)
      throw new ApiError(422, err.code, err.message, { details: err.details });
    throw err;
  }
}
