import type { Job, JobItem } from "../../db/schema";
import { GENERATE_JOB, SINGLE_ITEM_KEY } from "./job";
import type { GenerateItemInput, GenerateJobInput } from "./model";

/** One prompt of a generation as it was accepted: the item id the caller chose (a page, a slot) and its prompt. */
export type RequestItem = { id: string } & GenerateItemInput;

/**
 * A generation's request as accepted: what was asked, in the caller's own terms, so an answer can be matched
 * to what the app sent without its own bookkeeping. `prompt` is the single prompt of a one-prompt job (null
 * for a batch, whose prompts are in `items`).
 */
export type GenerationRequest = {
  provider: string;
  model: string | null;
  prompt: string | null;
  negativePrompt: string | null;
  size: string;
  n: number;
  seed: number | null;
  output: GenerateJobInput["output"];
  params: Record<string, unknown> | null;
  /** True when the job edits an input image. */
  edit: boolean;
  recipeId: string | null;
  /** The recipe variables the prompt was made from (defaults filled in). */
  variables: Record<string, string | number> | null;
};

/** `GenerationRequest` with every item (GET /api/jobs/:id) or with their count (the list's summary). */
export type GenerationRequestDetail = GenerationRequest & { items: RequestItem[] };
export type GenerationRequestSummary = GenerationRequest & { itemCount: number };

export const isGeneration = (job: Job): boolean => job.type === GENERATE_JOB;

function base(job: Job, firstItem: { key: string; prompt: string | null } | null): GenerationRequest {
  const input = job.input as GenerateJobInput;
  const variables = job.metadata?.recipeVariables;
  return {
    provider: input.provider,
    model: input.model ?? null,
    prompt: firstItem?.key === SINGLE_ITEM_KEY ? firstItem.prompt : null,
    negativePrompt: input.negativePrompt ?? null,
    size: input.size,
    n: input.n,
    seed: input.seed ?? null,
    output: input.output,
    params: input.params ?? null,
    edit: input.imageKey !== undefined,
    recipeId: job.recipeId,
    variables:
      variables && typeof variables === "object" ? (variables as Record<string, string | number>) : null,
  };
}

export function generationRequest(job: Job, items: JobItem[]): GenerationRequestDetail {
  const first = items[0];
  const prompt = (i: JobItem) => (i.input as GenerateItemInput).prompt;
  return {
    ...base(job, first ? { key: first.key, prompt: prompt(first) } : null),
    items: items.map((i) => ({ id: i.key, ...(i.input as GenerateItemInput) })),
  };
}

/** The summary from the first item alone (`firstKey`, `firstPrompt`) and the item count. */
export function generationSummary(
  job: Job,
  first: { key: string; prompt: string | null; count: number } | undefined,
): GenerationRequestSummary {
  return { ...base(job, first ?? null), itemCount: first?.count ?? 0 };
}
