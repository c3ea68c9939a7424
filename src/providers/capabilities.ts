/**
 * What each model accepts, from its provider's documentation (docs/providers.md shows the same table):
 * sizes, images per call, input images and masks, negative prompts, seeds, output formats.
 *
 * Two uses: `checkRequest` refuses at submit what a model cannot do (before any charge or queue row), and the
 * adapters read the same entry to send only the parameters the model takes. A model that is not in its
 * provider's table is passed through unchecked, with a warning (`unknownModelWarning`).
 */
import { parseSize } from "./media";

export type SizeRule =
  /** Exactly these `WIDTHxHEIGHT` sizes. */
  | { kind: "fixed"; sizes: string[] }
  /** Any width and height in [min, max] that are multiples of `step`. */
  | { kind: "range"; min: number; max: number; step: number }
  /** The model takes an aspect ratio and picks the pixels; a size within 5 % of a listed ratio selects it. */
  | { kind: "aspect"; ratios: string[] }
  /** No size parameter: the output follows the input image. */
  | { kind: "input" };

export type ModelCapabilities = {
  /** `text`: text to image only; `edit`: needs an input image; `both`: either. */
  input: "text" | "edit" | "both";
  /** Input images one request may carry (0 for text-only models). */
  maxInputImages: number;
  /** Takes a mask (transparent = the area to change). */
  mask: boolean;
  sizes: SizeRule;
  /** Images one provider call returns at most; Easel makes several calls for a larger `n`. */
  imagesPerCall: number;
  /**
   * `native`: a negative-prompt parameter; `in-prompt`: no such parameter, so Easel appends "Avoid: …" to the
   * prompt (instruction-following models); `none`: refused, since words in the prompt would be drawn.
   */
  negativePrompt: "native" | "in-prompt" | "none";
  seed: boolean;
  /** Formats the provider can be asked for with `params.output_format` (Easel's output preset re-encodes anyway). */
  outputFormats: string[];
};

/** A provider's table: its documented models, and for servers whose models are the user's own files, a rule for any. */
export type ProviderCapabilities = {
  models: Record<string, ModelCapabilities>;
  /** Applies to every model name (ComfyUI and AUTOMATIC1111 checkpoints, the placeholder). */
  anyModel?: ModelCapabilities;
};

/** The size used when a request names none. */
export const DEFAULT_SIZE = "1024x1024";

/** How far (relative) a size's ratio may be from a listed aspect ratio and still select it. */
const RATIO_TOLERANCE = 0.05;

export function capabilitiesFor(table: ProviderCapabilities, model: string): ModelCapabilities | undefined {
  return table.models[model] ?? table.anyModel;
}

function ratioOf(ratio: string): number {
  const [w, h] = ratio.split(":").map(Number);
  return (w ?? 1) / (h ?? 1);
}

/** The listed ratio a size selects (nearest on a log scale, within 5 %), or undefined. */
export function matchAspectRatio(size: string, ratios: readonly string[]): string | undefined {
  const { width, height } = parseSize(size);
  const want = Math.log(width / height);
  let best: { ratio: string; off: number } | undefined;
  for (const ratio of ratios) {
    const off = Math.abs(Math.log(ratioOf(ratio)) - want);
    if (!best || off < best.off) best = { ratio, off };
  }
  return best && best.off <= Math.log(1 + RATIO_TOLERANCE) ? best.ratio : undefined;
}

/** Splits `n` images into calls of at most `perCall` each: n=5, perCall=4 → [4, 1]. */
export function imagesPerCallSplit(n: number, perCall: number): number[] {
  const per = Math.max(1, perCall);
  const calls: number[] = [];
  for (let left = Math.max(1, n); left > 0; left -= per) calls.push(Math.min(left, per));
  return calls;
}

/** "1024x1024, 1536x1024 or 1024x1536", "256–1440 per side in steps of 32", … */
export function describeSizes(rule: SizeRule): string {
  switch (rule.kind) {
    case "fixed":
      return `sizes ${rule.sizes.join(", ")}`;
    case "range":
      return `${rule.min}–${rule.max} pixels per side${rule.step > 1 ? ` in steps of ${rule.step}` : ""}`;
    case "aspect":
      return `aspect ratios ${rule.ratios.join(", ")} (the size picks the ratio; the model picks the pixels)`;
    case "input":
      return "no size: the output follows the input image";
  }
}

function sizeProblem(size: string, rule: SizeRule): string | undefined {
  const { width, height } = parseSize(size);
  switch (rule.kind) {
    case "fixed":
      return rule.sizes.includes(`${width}x${height}`)
        ? undefined
        : `size ${size} (takes ${describeSizes(rule)})`;
    case "range": {
      const fits = (v: number) => v >= rule.min && v <= rule.max && v % rule.step === 0;
      return fits(width) && fits(height) ? undefined : `size ${size} (takes ${describeSizes(rule)})`;
    }
    case "aspect":
      return matchAspectRatio(size, rule.ratios) ? undefined : `size ${size} (takes ${describeSizes(rule)})`;
    case "input":
      return `size ${size} (takes ${describeSizes(rule)})`;
  }
}

/** The parts of a generate request the capability check reads; batch items may carry their own values. */
export type CheckedRequest = {
  /** Only an explicitly requested size is checked (a model without a size parameter accepts "none given"). */
  size?: string;
  negativePrompt?: string;
  seed?: number;
  hasImage: boolean;
  hasMask: boolean;
  params?: Record<string, unknown>;
  items?: Array<{ size?: string; negativePrompt?: string; seed?: number }>;
};

/** What `model` cannot do of `req`, one phrase each; empty when it takes everything asked. */
export function requestProblems(caps: ModelCapabilities, req: CheckedRequest): string[] {
  const problems: string[] = [];
  if (req.hasImage && caps.input === "text") problems.push("input images (it only generates from text)");
  if (!req.hasImage && caps.input === "edit")
    problems.push("a request without an input image (it only edits)");
  if (req.hasMask && !caps.mask) problems.push("a mask (describe the edit in the prompt instead)");
  const sizes = new Set([req.size, ...(req.items ?? []).map((i) => i.size)]);
  for (const size of sizes) {
    const problem = size === undefined ? undefined : sizeProblem(size, caps.sizes);
    if (problem) problems.push(problem);
  }
  const negative = req.negativePrompt || req.items?.some((i) => i.negativePrompt);
  if (negative && caps.negativePrompt === "none") problems.push("a negative prompt");
  const seeded = req.seed !== undefined || req.items?.some((i) => i.seed !== undefined);
  if (seeded && !caps.seed) problems.push("a seed");
  const format = req.params?.output_format;
  if (typeof format === "string" && !caps.outputFormats.includes(format)) {
    problems.push(`output_format ${format} (takes ${caps.outputFormats.join(", ")})`);
  }
  return problems;
}

/** One line for a job's history when a model is not in the table. */
export function unknownModelWarning(provider: string, model: string, known: readonly string[]): string {
  return (
    `model "${model}" is not in Easel's capability table for ${provider} (known: ${known.join(", ")}); ` +
    "it was passed through unchecked, with the parameters as given"
  );
}

/** The capability check of one request against a provider's table. */
export type CapabilityVerdict = {
  /** The model the request runs on (the provider's default when it names none). */
  model: string;
  /** Its table entry; undefined when the model is not in the table (or the provider has none). */
  capabilities?: ModelCapabilities;
  /** What the model cannot do of the request; a non-empty list refuses it. */
  problems: string[];
  /** When refused: the provider's other listed models that take the request as it is. */
  alternatives?: string[];
  /** Set when the model is not in the provider's table: the request runs unchecked. */
  warning?: string;
};

export function checkRequest(
  info: { name: string; defaultModel: string; capabilities?: ProviderCapabilities },
  model: string | undefined,
  req: CheckedRequest,
): CapabilityVerdict {
  const name = model ?? info.defaultModel;
  const table = info.capabilities;
  if (!table) return { model: name, problems: [] };
  const caps = capabilitiesFor(table, name);
  if (!caps) {
    return {
      model: name,
      problems: [],
      warning: unknownModelWarning(info.name, name, Object.keys(table.models)),
    };
  }
  const problems = requestProblems(caps, req);
  if (problems.length === 0) return { model: name, capabilities: caps, problems };
  const alternatives = Object.entries(table.models)
    .filter(([other, c]) => other !== name && requestProblems(c, req).length === 0)
    .map(([other]) => other);
  return { model: name, capabilities: caps, problems, alternatives };
}
