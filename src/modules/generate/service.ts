import type { Config } from "../../config";
import { ApiError, unprocessable } from "../../errors";
import { resolvePreset } from "../../images/presets";
import { type ImageInput, validateEditInputs } from "../../images/validate";
import { assertPublicUrl, UrlGuardError } from "../../net/url-guard";
import type { ProviderRegistry } from "../../providers/registry";
import type { EnqueueOptions, Queue } from "../../queue";
import { JobFailure } from "../../queue/errors";
import type { Storage } from "../../storage";
import type { AuthService, Principal } from "../auth/service";
import { GENERATE_JOB, SINGLE_ITEM_KEY } from "./job";
import type { GenerateBody, GenerateItemInput, GenerateJobInput } from "./model";

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
  >;
  queue: Queue;
  providers: ProviderRegistry;
  storage: Storage;
  auth: AuthService;
};

/**
 * Hooks later features attach to a generation's enqueue, inside its transaction (credits, recipe usage):
 * they may add enqueue options (e.g. creditsCharged) or throw an ApiError to refuse.
 */
export type EnqueueHook = (ctx: {
  owner: { id: string };
  request: GenerateRequest;
  itemCount: number;
  imageCount: number;
}) => Partial<EnqueueOptions> | undefined;

/** Turns a generate request into a queued `generate` job, validating everything first. */
export class GenerateService {
  readonly #d: GenerateDeps;
  readonly #hooks: EnqueueHook[] = [];

  constructor(deps: GenerateDeps) {
    this.#d = deps;
  }

  onEnqueue(hook: EnqueueHook): void {
    this.#hooks.push(hook);
  }

  async submit(p: Principal, req: GenerateRequest) {
    const { queue, providers, config } = this.#d;
    const owner = this.#d.auth.actingUser(p, req.userId);
    const providerName = req.provider ?? providers.defaultName;
    const provider = lookup(() => providers.get(providerName));
    resolvePreset(req.output);
    if (req.webhookUrl) await this.#checkUrl(req.webhookUrl);

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
    const { job } = queue.store.tx(() => {
      let extra: Partial<EnqueueOptions> = {};
      for (const hook of this.#hooks)
        extra = { ...extra, ...hook({ owner, request: req, itemCount: items.length, imageCount }) };
      return queue.enqueue(GENERATE_JOB, input, {
        items,
        ownerId: owner.id,
        priority: req.priority,
        dedupeKey: req.dedupeKey,
        webhookUrl: req.webhookUrl ?? null,
        timeoutMs: this.#jobTimeout(items.length),
        metadata: req.metadata ?? null,
        ...extra,
      });
    });
    return {
      jobId: job.id,
      status: job.status,
      message: `queued ${items.length} item${items.length === 1 ? "" : "s"} on ${providerName}`,
      statusUrl: `${config.publicUrl}/api/jobs/${job.id}/status`,
      websocketSubscription: `job:${job.id}`,
      totalItems: items.length,
    };
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
