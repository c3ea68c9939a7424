import { startWithThumbnail } from "../../images/process";
import { ProviderError } from "../../providers/errors";
import type { ProviderRegistry } from "../../providers/registry";
import type { GeneratedImage, InputImage } from "../../providers/types";
import {
  defineJob,
  type ItemContext,
  RetryAfterError,
  RetryableError,
  UnrecoverableError,
} from "../../queue";
import { generationKey, generationThumbnailKey, IMMUTABLE_CACHE_CONTROL, type Storage } from "../../storage";
import type { AssetService } from "./assets";
import { GenerateItemInput, GenerateJobInput } from "./model";

export type GenerateJobDeps = {
  providers: ProviderRegistry;
  storage: Storage;
  assets: AssetService;
  /** Per-item attempt timeout (ITEM_TIMEOUT_MS). */
  itemTimeoutMs: number;
  /** Items of one job generated in parallel. */
  itemConcurrency: number;
  itemMaxAttempts: number;
  /**
   * Starts the stored image and its thumbnail from the provider's bytes (the generate benchmark times it to
   * separate encoding from overhead). @defaultValue startWithThumbnail
   */
  process?: typeof startWithThumbnail;
};

export const GENERATE_JOB = "generate";
/** The item key of a single-prompt job (a batch of one). */
export const SINGLE_ITEM_KEY = "main";

/**
 * `generate`: a batch job whose items are the prompts (a single prompt is a batch of one). Each item calls
 * the provider, then sharp makes the output and a thumbnail, both stored, and asset rows are recorded.
 * A finished item is a checkpoint: it is never generated again after a crash or a retry.
 */
export function generateJob(deps: GenerateJobDeps) {
  return defineJob({
    type: GENERATE_JOB,
    input: GenerateJobInput,
    items: {
      concurrency: deps.itemConcurrency,
      timeoutMs: deps.itemTimeoutMs,
      maxAttempts: deps.itemMaxAttempts,
      // Providers fail in their own terms; the engine is told what each failure means for the job.
      run: (ctx) => generateItem(deps, ctx).catch(rethrowForQueue),
    },
  });
}

async function generateItem(deps: GenerateJobDeps, ctx: ItemContext<GenerateJobInput>) {
  const { input, item, itemSignal } = ctx;
  const it = GenerateItemInput.parse(ctx.itemInput);
  const [image, mask] = await Promise.all([
    loadInput(deps.storage, input.imageKey),
    loadInput(deps.storage, input.maskKey),
  ]);
  const single = item.key === SINGLE_ITEM_KEY;
  const generated = await deps.providers.generate(
    input.provider,
    {
      prompt: it.prompt,
      negativePrompt: it.negativePrompt ?? input.negativePrompt,
      images: image ? [image] : undefined,
      mask,
      size: it.size ?? input.size,
      sizeGiven: it.size !== undefined || input.autoSize !== true,
      n: it.n ?? input.n,
      seed: it.seed ?? input.seed,
      model: input.model,
      params: input.params,
    },
    {
      signal: itemSignal,
      // A single-image job shows the provider's own progress (ComfyUI steps, A1111, fal queue).
      onProgress: single ? (pct, message) => ctx.progress(Math.min(95, pct), message) : undefined,
    },
  );
  const assetIds: string[] = [];
  for (const [n, img] of generated.entries()) {
    assetIds.push(await storeImage(deps, ctx, img, n));
  }
  return {
    assetId: assetIds[0] ?? null,
    result: {
      assetIds,
      seeds: generated.map((g) => g.seed ?? null),
      revisedPrompt: generated[0]?.revisedPrompt ?? null,
    },
  };
}

async function storeImage(
  deps: GenerateJobDeps,
  ctx: ItemContext<GenerateJobInput>,
  img: GeneratedImage,
  n: number,
): Promise<string> {
  const { job, input, item } = ctx;
  const started = (deps.process ?? startWithThumbnail)(img.bytes, input.output);
  const thumbKey = generationThumbnailKey(job.id, item.key, n);
  // The thumbnail is encoded long before the full-size image: its write overlaps the rest of the encode.
  const thumbnailStored = started.thumbnail.catch(unreadable).then((thumbnail) =>
    deps.storage.put(thumbKey, thumbnail.bytes, {
      contentType: thumbnail.mime,
      cacheControl: IMMUTABLE_CACHE_CONTROL,
    }),
  );
  const imageStored = started.image.catch(unreadable).then(async (image) => {
    const key = generationKey(job.id, item.key, n, image.ext);
    await deps.storage.put(key, image.bytes, {
      contentType: image.mime,
      cacheControl: IMMUTABLE_CACHE_CONTROL,
    });
    return { image, key };
  });
  const [{ image, key }] = await Promise.all([imageStored, thumbnailStored]);
  return deps.assets.record({
    jobId: job.id,
    itemIdx: item.idx,
    ownerId: job.ownerId,
    storageKey: key,
    thumbnailKey: thumbKey,
    contentType: image.mime,
    bytes: image.bytes.byteLength,
    width: image.width,
    height: image.height,
  });
}

/**
 * What a provider's failure means for the job: a wait the provider asked for re-queues without spending an
 * attempt, other retryable kinds spend one and back off, the rest fail the item now. Anything that is not a
 * ProviderError (the engine's cancel or timeout, a bug) goes to the engine as it is.
 */
export function toQueueFailure(err: unknown): unknown {
  if (!(err instanceof ProviderError)) return err;
  const { code, details, refundable } = err;
  if (err.retryable && err.retryAfterMs !== undefined) {
    return new RetryAfterError(err.retryAfterMs, err.message, { code, details });
  }
  if (err.retryable) return new RetryableError(err.message, { code, details, cause: err });
  return new UnrecoverableError(err.message, { code, refundable, details, cause: err });
}

function rethrowForQueue(err: unknown): never {
  throw toQueueFailure(err);
}

/** Sharp cannot read what the provider sent: worth generating again. */
function unreadable(err: unknown): never {
  throw new RetryableError(`provider returned an image sharp cannot read: ${(err as Error).message}`, {
    code: "provider_bad_response",
  });
}

async function loadInput(storage: Storage, key: string | undefined): Promise<InputImage | undefined> {
  if (!key) return undefined;
  const obj = await storage.get(key);
  if (!obj) throw new RetryableError(`input image ${key} is missing from storage`, { code: "input_missing" });
  return { bytes: obj.body, mime: obj.contentType };
}
