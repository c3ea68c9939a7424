/**
 * The dashboard's queries, forms and path parameters. Forms post blank fields as empty strings, which mean
 * "not given" here.
 */
import { z } from "zod";
import { JOB_STATUSES } from "../../db/schema";
import { ExpiresInSeconds } from "../auth/model";

const blankToUndefined = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);
const optionalText = (max: number) => z.preprocess(blankToUndefined, z.string().trim().max(max).optional());

export const JobsQuery = z.object({
  status: z.preprocess(blankToUndefined, z.enum([...JOB_STATUSES, "waiting", "delayed"]).optional()),
  type: optionalText(64),
  userId: optionalText(128),
  recipeId: optionalText(128),
  q: optionalText(64),
  cursor: optionalText(64),
  /** `1`: show internal jobs (webhook deliveries, card renders, backlog top-ups) too. */
  internal: z.preprocess(blankToUndefined, z.enum(["1"]).optional()),
});
/** The page's filters as the service takes them. */
export const jobFilters = ({ internal, ...q }: z.infer<typeof JobsQuery>) => ({
  ...q,
  internal: internal === "1",
});
export const NoticeQuery = z.object({ done: optionalText(32), error: optionalText(32) });
export const KeysQuery = NoticeQuery.extend({ user: optionalText(128) });
export const KeyForm = z.object({
  _csrf: z.string().max(128).optional(),
  name: z.string().trim().min(1).max(100),
  expiresInSeconds: z.preprocess(blankToUndefined, z.coerce.number().pipe(ExpiresInSeconds).optional()),
  user: optionalText(128),
});
export const IdParams = z.object({ id: z.string().min(1).max(128) });
export const FileParams = z.object({ file: z.string().max(32) });
export const SignInBody = z.object({ key: z.string().trim().min(1).max(256) });
/** Forms carry the CSRF token; scripts may send it as X-CSRF-Token with no body. */
export const FormBody = z.object({ _csrf: z.string().max(128).optional() }).optional();

/** `/dashboard/fragments/:name`: the name is checked by the route's switch. */
export const FragmentParams = z.object({ name: z.string().max(32) });
