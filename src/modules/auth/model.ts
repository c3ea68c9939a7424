import { z } from "zod";

export const TokenBody = z.strictObject({
  /** The end user the token is for (apps: their external id). Omit for a token of the caller itself. */
  userId: z.string().min(1).max(128).optional(),
  ttlSeconds: z
    .number()
    .int()
    .min(10)
    .max(7 * 24 * 3600)
    .optional(),
});

/** A key's lifetime from now, in seconds: a minute to ten years. */
export const ExpiresInSeconds = z
  .number()
  .int()
  .min(60)
  .max(10 * 366 * 24 * 3600);

const UserRef = z.string().min(1).max(128);

export const CreateKeyBody = z.object({
  /** A label for the key, e.g. where it is used ("production", "laptop"). */
  name: z.string().trim().min(1).max(100),
  /** Whose key: admins name anyone, apps their end users (external id, created on first use). @defaultValue the caller */
  userId: UserRef.optional(),
  /** The key stops working this many seconds from now. @defaultValue never expires */
  expiresInSeconds: ExpiresInSeconds.optional(),
});
export type CreateKeyBody = z.infer<typeof CreateKeyBody>;

export const RotateKeyBody = z
  .object({
    /** The new key's lifetime from now. @defaultValue as long as the old key was meant to live */
    expiresInSeconds: ExpiresInSeconds.optional(),
  })
  .optional();

export const ListKeysQuery = z.object({
  /** Whose keys: admins name anyone, apps their end users. @defaultValue the caller */
  userId: UserRef.optional(),
});

export const KeyIdParams = z.object({ id: z.string().min(1).max(64) });

export const KEY_STATUSES = ["active", "expired", "revoked"] as const;
export type KeyStatus = (typeof KEY_STATUSES)[number];

export const KeyView = z
  .object({
    id: z.string(),
    userId: z.string(),
    name: z.string(),
    prefix: z.string().meta({ description: "The key's first characters, to tell keys apart" }),
    status: z.enum(KEY_STATUSES),
    createdAt: z.number().int(),
    lastUsedAt: z.number().int().nullable().meta({ description: "Updated at most once a minute" }),
    expiresAt: z.number().int().nullable(),
    revokedAt: z.number().int().nullable(),
  })
  .meta({ title: "ApiKey" });
export type KeyView = z.infer<typeof KeyView>;

export const KeyList = z.object({ keys: z.array(KeyView) }).meta({ title: "ApiKeyList" });

export const NewKeyView = KeyView.extend({
  key: z.string().meta({ description: "The full key. It is shown this once and cannot be read again." }),
  rotatedFrom: z.string().nullable().meta({ description: "The key this one replaced (now revoked)" }),
}).meta({ title: "NewApiKey" });
