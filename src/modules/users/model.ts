import { z } from "zod";
import { ROLES } from "../../db/schema";

export const CreateUserBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  role: z.enum(ROLES.filter((r) => r !== "system") as ["admin", "app", "user"]),
  externalId: z.string().min(1).max(128).optional(),
  unlimited: z.boolean().optional(),
  /** Create an API key for the new user and return it once. @defaultValue true */
  createKey: z.boolean().default(true),
});
export type CreateUserBody = z.infer<typeof CreateUserBody>;
