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

/** A user as the API shows it. */
export const UserView = z
  .object({
    id: z.string(),
    name: z.string(),
    role: z.enum(ROLES),
    externalId: z.string().nullable().meta({ description: "An app's own id for its end user" }),
    parentId: z.string().nullable().meta({ description: "The app an end user belongs to" }),
    credits: z.number().int(),
    unlimited: z.boolean(),
    createdAt: z.number().int(),
  })
  .meta({ title: "User" });
export type UserView = z.infer<typeof UserView>;

/** `GET /api/profile`: the caller, and whether it came with a key or a client token. */
export const ProfileView = UserView.extend({ via: z.enum(["key", "token"]) }).meta({ title: "Profile" });

/** `POST /api/users`: the new user and, when asked for, its first key (shown this once). */
export const CreatedUserView = z.object({
  user: UserView,
  key: z.string().nullable().meta({ description: "The full key, shown this once (null on a replay)" }),
  keyPrefix: z.string().nullable(),
});
