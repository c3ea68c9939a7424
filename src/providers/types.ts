import type { ProviderCapabilities } from "./capabilities";

/** One image-generation request, provider-neutral. */
export type GenerateRequest = {
  prompt: string;
  negativePrompt?: string;
  /** Input images for edits (decoded bytes, already validated by src/images). */
  images?: InputImage[];
  mask?: InputImage;
  /** `WIDTHxHEIGHT`, e.g. `1024x1024`. Adapters map it to their own notion (aspect ratio, enum size…). */
  size: string;
  /**
   * False when the caller named no size and `size` is Easel's default: models that can follow the input
   * image's shape (Kontext, Qwen image edit) then do. @defaultValue true
   */
  sizeGiven?: boolean;
  n: number;
  seed?: number;
  model?: string;
  /** Provider-specific extras passed through (quality, steps, guidance…). */
  params?: Record<string, unknown>;
};

export type InputImage = { bytes: Uint8Array; mime: string };

export type GeneratedImage = {
  bytes: Uint8Array;
  mime: string;
  /** Seed actually used, when the provider reports it. */
  seed?: number;
  revisedPrompt?: string;
};

export type GenerateContext = {
  signal: AbortSignal;
  /** Optional progress callback (0-100), for providers that report it (ComfyUI, A1111, fal logs). */
  onProgress?: (pct: number, message?: string) => void;
};

export type ProviderInfo = {
  name: string;
  defaultModel: string;
  models: string[];
  supportsEdits: boolean;
  /**
   * What each model accepts (src/providers/capabilities.ts); requests are checked against it at submit.
   * Providers added from outside (tests, plugins) may leave it out: their requests are not checked.
   */
  capabilities?: ProviderCapabilities;
  /** Max concurrent requests and requests per minute enforced by the registry's limiter. */
  limits: { concurrency: number; rpm: number };
};

export interface Provider {
  readonly info: ProviderInfo;
  generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]>;
  /**
   * HTTP requests one `generate` makes against the provider's rate limit (e.g. `n` for APIs that return
   * one image per call). The registry's limiter charges this many. @defaultValue 1
   */
  requestCost?(req: GenerateRequest): number;
}
