import { readFileSync } from "node:fs";
import { type Config, ConfigError } from "../config";
import {
  createProviderRegistry,
  type ProviderCall,
  ProviderLookupError,
  type ProviderRegistry,
} from "./registry";

/** The provider registry from the environment: a provider is on when its key or URL is set. */
export function providersFrom(config: Config, onCall?: (call: ProviderCall) => void): ProviderRegistry {
  try {
    return registryFrom(config, onCall);
  } catch (err) {
    // The registry checks DEFAULT_PROVIDER at once: say so the way every other bad variable is said.
    if (err instanceof ProviderLookupError && config.DEFAULT_PROVIDER) {
      throw new ConfigError(
        `DEFAULT_PROVIDER: ${err.message}; set its key or URL, or choose another provider`,
      );
    }
    throw err;
  }
}

function registryFrom(config: Config, onCall: ((call: ProviderCall) => void) | undefined): ProviderRegistry {
  return createProviderRegistry({
    onCall,
    openaiApiKey: config.OPENAI_API_KEY,
    openaiBaseUrl: config.OPENAI_BASE_URL,
    hfToken: config.HF_TOKEN,
    hfBaseUrl: config.HF_BASE_URL,
    geminiApiKey: config.GEMINI_API_KEY,
    geminiBaseUrl: config.GEMINI_BASE_URL,
    replicateApiToken: config.REPLICATE_API_TOKEN,
    replicateBaseUrl: config.REPLICATE_BASE_URL,
    falKey: config.FAL_KEY,
    falQueueBaseUrl: config.FAL_QUEUE_URL,
    comfyuiUrl: config.COMFYUI_URL,
    comfyuiWorkflow: config.COMFYUI_WORKFLOW ? readFileSync(config.COMFYUI_WORKFLOW, "utf8") : undefined,
    comfyuiEditWorkflow: config.COMFYUI_EDIT_WORKFLOW
      ? readFileSync(config.COMFYUI_EDIT_WORKFLOW, "utf8")
      : undefined,
    a1111Url: config.A1111_URL,
    a1111Auth: config.A1111_AUTH,
    dashscopeApiKey: config.DASHSCOPE_API_KEY,
    dashscopeBaseUrl: config.DASHSCOPE_BASE_URL,
    bflApiKey: config.BFL_API_KEY,
    bflBaseUrl: config.BFL_BASE_URL,
    placeholder: { latencyMs: config.PLACEHOLDER_LATENCY_MS },
    limits: config.PROVIDER_LIMITS,
    defaultProvider: config.DEFAULT_PROVIDER,
  });
}
