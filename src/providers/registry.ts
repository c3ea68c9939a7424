/**
 * The set of image providers this process can use, built from configuration: a provider is on when its
 * key or URL is set; `placeholder` is always on and is the default when nothing else is configured.
 * Every provider handed out is wrapped in its limiter (concurrency + requests per minute), so callers
 * cannot bypass the limits whether they use `get(name).generate` or `generate(name, …)`.
 */

import { oneOf } from "../validation";
import { createAutomatic1111Provider } from "./automatic1111";
import { createBflProvider } from "./bfl";
import { type ComfyuiOptions, createComfyuiProvider } from "./comfyui";
import { createDashscopeProvider } from "./dashscope";
import { ProviderError } from "./errors";
import { createFalProvider } from "./fal";
import { createGeminiProvider } from "./gemini";
import { type HealthStats, ProviderHealth } from "./health";
import { createHuggingFaceProvider } from "./huggingface";
import { type Clock, type LimiterStats, ProviderLimiter, systemClock } from "./limiter";
import { createOpenAIProvider } from "./openai";
import { createPlaceholderProvider, type PlaceholderOptions } from "./placeholder";
import { createReplicateProvider } from "./replicate";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

/** Every provider Easel knows, in the order the default is picked when several are configured. */
export const PROVIDER_NAMES = [
  "openai",
  "gemini",
  "huggingface",
  "replicate",
  "fal",
  "bfl",
  "dashscope",
  "comfyui",
  "automatic1111",
  "placeholder",
] as const;

export type ProviderName = (typeof PROVIDER_NAMES)[number];

export type ProviderLimits = ProviderInfo["limits"];

export type ProviderRegistryOptions = {
  openaiApiKey?: string;
  /** OpenAI-compatible servers (sd-server, LocalAI, gateways). @defaultValue "https://api.openai.com/v1" */
  openaiBaseUrl?: string;
  hfToken?: string;
  /** @defaultValue "https://router.huggingface.co" */
  hfBaseUrl?: string;
  geminiApiKey?: string;
  /** @defaultValue "https://generativelanguage.googleapis.com/v1beta" */
  geminiBaseUrl?: string;
  replicateApiToken?: string;
  /** @defaultValue "https://api.replicate.com/v1" */
  replicateBaseUrl?: string;
  falKey?: string;
  /** @defaultValue "https://queue.fal.run" */
  falQueueBaseUrl?: string;
  comfyuiUrl?: string;
  /** API-format workflow template (object or JSON text). @defaultValue the adapter's built-in SDXL graph */
  comfyuiWorkflow?: ComfyuiOptions["workflow"];
  /** API-format edit workflow (`{{image}}` on LoadImage). @defaultValue the adapter's built-in img2img graph */
  comfyuiEditWorkflow?: ComfyuiOptions["editWorkflow"];
  a1111Url?: string;
  /** HTTP Basic credentials for A1111/Forge `--api-auth`: `"user:pass"` or an object. */
  a1111Auth?: string | { username: string; password: string };
  dashscopeApiKey?: string;
  /** @defaultValue "https://dashscope-intl.aliyuncs.com" */
  dashscopeBaseUrl?: string;
  bflApiKey?: string;
  /** @defaultValue "https://api.bfl.ai" */
  bflBaseUrl?: string;
  placeholder?: PlaceholderOptions;
  /** Per-provider overrides of the adapters' default limits, e.g. `{ openai: { rpm: 500 } }`. */
  limits?: Partial<Record<string, Partial<ProviderLimits>>>;
  /** Must name an enabled provider. @defaultValue the first configured in PROVIDER_NAMES order */
  defaultProvider?: string;
  /** Extra or replacement providers (tests, plugins); enabled as given. */
  providers?: Provider[];
  /** Clock for the limiters. @defaultValue system clock */
  clock?: Clock;
  /** Told of every call's outcome and duration (metrics). */
  onCall?: (call: ProviderCall) => void;
};

/** Unknown or disabled provider: a client error, carried with the HTTP status the API should answer. */
export class ProviderLookupError extends ProviderError {
  override name = "ProviderLookupError";
  readonly status = 422;
  constructor(code: "provider_not_found" | "provider_not_configured", provider: string, message: string) {
    super("unknown_provider", message, { code, details: { provider } });
  }
}

export type ProviderRegistry = {
  /** The limited provider; throws ProviderLookupError (`provider_not_found` / `provider_not_configured`). */
  get(name: string): Provider;
  has(name: string): boolean;
  /** Enabled providers with their effective limits, default first. */
  list(): ProviderInfo[];
  default(): Provider;
  readonly defaultName: string;
  generate(name: string, req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]>;
  /** Limiter state per enabled provider (for /api/queue/status and metrics). */
  stats(): Record<string, ProviderStats>;
};

function parseBasicAuth(auth: ProviderRegistryOptions["a1111Auth"]) {
  if (auth === undefined || typeof auth === "object") return auth;
  const i = auth.indexOf(":");
  return i < 0
    ? { username: auth, password: "" }
    : { username: auth.slice(0, i), password: auth.slice(i + 1) };
}

/** The adapters whose configuration is present, built with their (overridable) base URLs. */
function configuredProviders(o: ProviderRegistryOptions): Provider[] {
  const out: Provider[] = [createPlaceholderProvider(o.placeholder)];
  if (o.openaiApiKey) {
    out.push(
      createOpenAIProvider({ apiKey: o.openaiApiKey, ...(o.openaiBaseUrl && { baseUrl: o.openaiBaseUrl }) }),
    );
  }
  if (o.hfToken) {
    out.push(createHuggingFaceProvider({ token: o.hfToken, ...(o.hfBaseUrl && { baseUrl: o.hfBaseUrl }) }));
  }
  if (o.geminiApiKey) {
    out.push(
      createGeminiProvider({ apiKey: o.geminiApiKey, ...(o.geminiBaseUrl && { baseUrl: o.geminiBaseUrl }) }),
    );
  }
  if (o.replicateApiToken) {
    out.push(
      createReplicateProvider({
        apiToken: o.replicateApiToken,
        ...(o.replicateBaseUrl && { baseUrl: o.replicateBaseUrl }),
      }),
    );
  }
  if (o.falKey) {
    out.push(
      createFalProvider({ key: o.falKey, ...(o.falQueueBaseUrl && { queueBaseUrl: o.falQueueBaseUrl }) }),
    );
  }
  if (o.comfyuiUrl) {
    out.push(
      createComfyuiProvider({
        url: o.comfyuiUrl,
        ...(o.comfyuiWorkflow && { workflow: o.comfyuiWorkflow }),
        ...(o.comfyuiEditWorkflow && { editWorkflow: o.comfyuiEditWorkflow }),
      }),
    );
  }
  if (o.a1111Url) {
    const auth = parseBasicAuth(o.a1111Auth);
    out.push(createAutomatic1111Provider({ url: o.a1111Url, ...(auth && { auth }) }));
  }
  if (o.dashscopeApiKey) {
    out.push(
      createDashscopeProvider({
        apiKey: o.dashscopeApiKey,
        ...(o.dashscopeBaseUrl && { baseUrl: o.dashscopeBaseUrl }),
      }),
    );
  }
  if (o.bflApiKey) {
    out.push(createBflProvider({ apiKey: o.bflApiKey, ...(o.bflBaseUrl && { baseUrl: o.bflBaseUrl }) }));
  }
  return out;
}

/** A provider's limiter state and its recent record. */
export type ProviderStats = LimiterStats & { health: HealthStats };

type LimitedProvider = Provider & { stats(): ProviderStats };

/** One call of a provider as a job saw it (rate-limit waits included); `error` null when it succeeded. */
export type ProviderCall = { provider: string; seconds: number; error: unknown; aborted: boolean };

function limited(
  provider: Provider,
  limits: ProviderLimits,
  clock: Clock | undefined,
  onCall: ((call: ProviderCall) => void) | undefined,
): LimitedProvider {
  const limiter = new ProviderLimiter({ ...limits, ...(clock && { clock }) });
  const health = new ProviderHealth(clock ?? systemClock);
  const info: ProviderInfo = { ...provider.info, limits };
  const cost = (req: GenerateRequest) => provider.requestCost?.(req) ?? 1;
  const report = (started: number, error: unknown, aborted: boolean) =>
    onCall?.({ provider: info.name, seconds: (performance.now() - started) / 1000, error, aborted });
  return {
    info,
    generate: async (req, ctx) => {
      const started = performance.now();
      try {
        const out = await limiter.run(() => provider.generate(req, ctx), ctx.signal, cost(req));
        health.success();
        report(started, null, false);
        return out;
      } catch (err) {
        // A cancelled job or a shutdown says nothing about the provider.
        if (!ctx.signal.aborted) health.failure(err);
        report(started, err, ctx.signal.aborted);
        throw err;
      }
    },
    requestCost: cost,
    stats: () => ({ ...limiter.stats(), health: health.stats() }),
  };
}

/** Position in PROVIDER_NAMES; extra providers sort after the known remote ones, placeholder last. */
function rank(name: string): number {
  if (name === "placeholder") return PROVIDER_NAMES.length + 1;
  const i = PROVIDER_NAMES.indexOf(name as ProviderName);
  return i < 0 ? PROVIDER_NAMES.length : i;
}

export function createProviderRegistry(opts: ProviderRegistryOptions = {}): ProviderRegistry {
  const byName = new Map<string, LimitedProvider>();
  for (const p of [...configuredProviders(opts), ...(opts.providers ?? [])]) {
    const limits = { ...p.info.limits, ...opts.limits?.[p.info.name] };
    byName.set(p.info.name, limited(p, limits, opts.clock, opts.onCall));
  }

  function get(name: string): LimitedProvider {
    const p = byName.get(name);
    if (p) return p;
    if ((PROVIDER_NAMES as readonly string[]).includes(name)) {
      throw new ProviderLookupError(
        "provider_not_configured",
        name,
        `provider "${name}" is not configured (set its key or URL); configured here: ${[...byName.keys()].join(", ")}`,
      );
    }
    throw new ProviderLookupError(
      "provider_not_found",
      name,
      `unknown provider "${name}": ${oneOf(PROVIDER_NAMES)}`,
    );
  }

  const ordered = [...byName.keys()].sort((a, b) => rank(a) - rank(b));
  const defaultName = opts.defaultProvider ?? ordered[0] ?? "placeholder";
  // Fail at start-up, not on the first job, when the configured default names a disabled provider.
  get(defaultName);

  return {
    get,
    has: (name) => byName.has(name),
    list: () => [defaultName, ...ordered.filter((n) => n !== defaultName)].map((n) => get(n).info),
    default: () => get(defaultName),
    defaultName,
    generate: (name, req, ctx) => get(name).generate(req, ctx),
    stats: () => Object.fromEntries([...byName].map(([name, p]) => [name, p.stats()])),
  };
}
