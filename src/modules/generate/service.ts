import type { Config } from "../../config";
import type { Job, User } from "../../db/schema";
import { ApiError, unprocessable } from "../../errors";
import { resolvePreset } from "../../images/presets";
import { type ImageInput, validateEditInputs } from "../../images/validate";
import { assertPublicUrl, UrlGuardError } from "../../net/url-guard";
import type { ProviderRegistry } from "../../providers/registry";
import type { EnqueueOptions, Queue } from "../../queue";
import { JobFailure } from "../../queue/errors";
import type { Storage } from "../../storage";
import type { AuthService, Principal } from "../auth/service";
import { Admission } from "./admission";
import { GENERATE_JOB, SINGLE_ITEM_KEY } from "./job";
import type { GenerateBody, GenerateItemInput, GenerateJobInput, RecipeVariables } from "./model";

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
export type RecipeExpander = (recipeId: string, variables: RecipeVariables | undefined) => RecipeExpansion;

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
export type EnqueuedHook = (ctx: EnqueueHookContext & { job: Job; deduped: boolean }) => void;

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

  async submit(p: Principal, request: GenerateRequest) {
    const { queue, providers, config } = this.#d;
    const owner = this.#d.auth.actingUser(p, request.userId);
    const recipe = request.recipeId ? this.#expand(request.recipeId, request.variables) : undefined;
    const req = recipe ? withRecipe(request, recipe) : request;
    const providerName = req.provider ?? providers.defaultName;
    const provider = lookup(() => providers.get(providerName));
    resolvePreset(req.output);
    if (req.webhookUrl) await this.#checkUrl(req.webhookUrl);
    // After validation (a bad request hears what is wrong with it), before input images are stored or
    // anything is charged.
    this.admission.admit(owner);

    let imageKey: string | undefined;
    let maskKey: string | undefined;
    if (req.image !== undefined) {
      if (!provider.info.supportsEdits) {
        throw unprocessable("edits_not_supported", `provider "${providerName}" does not take input images`);
      }
      const { image, mask } = await validateEditInputs(
        { image: req.image, ...(req.mask !== undefined && { mask: req.mask }) },
        { maxBytes: config.MAX_INPUT_IMAGE_BYTES },
      );
      const folder = `inputs/${Bun.randomUUIDv7()}`;
      imageKey = `${folder}/image.${image.format === "jpeg" ? "jpg" : image.format}`;
      await this.#d.storage.put(imageKey, image.bytes, { contentType: image.mime });
      if (mask) {
        maskKey = `${folder}/mask.${mask.format === "jpeg" ? "jpg" : mask.format}`;
        await this.#d.storage.put(maskKey, mask.bytes, { contentType: mask.mime });
      }
    }

    const items = (req.items ?? [{ id: SINGLE_ITEM_KEY, prompt: req.prompt! }]).map((i) => ({
      key: i.id,
      input: itemInput(i),
    }));
    const input: GenerateJobInput = {
      provider: providerName,
      size: req.size,
      n: req.n,
      output: req.output,
      ...(req.model && { model: req.model }),
      ...(req.seed !== undefined && { seed: req.seed }),
      ...(req.negativePrompt && { negativePrompt: req.negativePrompt }),
      ...(req.params && { params: req.params }),
      ...(imageKey && { imageKey }),
      ...(maskKey && { maskKey }),
    };
    const imageCount = items.reduce((sum, i) => sum + ((i.input as GenerateItemInput).n ?? req.n), 0);
    const { job } = this.#enqueueOrDropInputs([imageKey, maskKey], () =>
      queue.store.tx(() => {
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
        const out = queue.enqueue(GENERATE_JOB, input, {
          items,
          ownerId: owner.id,
          priority: req.priority,
          dedupeKey: req.dedupeKey,
          webhookUrl: req.webhookUrl ?? null,
          timeoutMs: this.#jobTimeout(items.length),
          metadata: recipe ? { ...req.metadata, recipeVariables: recipe.values } : (req.metadata ?? null),
          recipeId: recipe?.recipeId ?? null,
          ...extra,
        });
        for (const hook of this.#enqueued) hook({ ...hookCtx, job: out.job, deduped: out.deduped });
        return out;
      }),
    );
    return {
      jobId: job.id,
      status: job.status,
      message: `queued ${items.length} item${items.length === 1 ? "" : "s"} on ${providerName}`,
      statusUrl: `${config.publicUrl}/api/jobs/${job.id}/status`,
      websocketSubscription: `job:${job.id}`,
      totalItems: items.length,
    };
  }

  /** Runs the enqueue; when it is refused (402, 409, 422 …) the input images stored for it are deleted. */
  #enqueueOrDropInputs<T>(keys: (string | undefined)[], enqueue: () => T): T {
    try {
      return enqueue();
    } catch (err) {
      for (const key of keys) {
        if (key) void this.#d.storage.delete(key).catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * Queues a generation for system work in the caller's transaction: no acting user and no enqueue hooks,
   * so nothing is charged and nothing counts as a user's choice.
   */
  enqueueDirect(g: DirectGeneration): Job {
    lookup(() => this.#d.providers.get(g.provider));
    resolvePreset(g.output);
    const input: GenerateJobInput = {
      provider: g.provider,
      size: g.size,
      n: 1,
      output: g.output,
      ...(g.model && { model: g.model }),
      ...(g.negativePrompt && { negativePrompt: g.negativePrompt }),
    };
    return this.#d.queue.enqueue(GENERATE_JOB, input, {
      items: [{ key: SINGLE_ITEM_KEY, input: itemInput({ prompt: g.prompt }) }],
      ownerId: g.ownerId,
      recipeId: g.recipeId,
      priority: g.priority,
      timeoutMs: this.#jobTimeout(1),
      metadata: g.metadata,
    }).job;
  }

  #expand(recipeId: string, variables: RecipeVariables | undefined): RecipeExpansion {
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
      if (err instanceof UrlGuardError) throw unprocessable("url_not_allowed", err.message);
      throw err;
    }
  }
}

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

/** Provider lookups fail as engine errors; over HTTP they are 422s with the same code. */
function lookup<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof JobFailure) throw new ApiError(422, err.code, err.message, { details: err.details });
    throw err;
  }
}
