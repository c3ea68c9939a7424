/**
 * Storage: the public face. `createStorage(config)` picks the backend from `STORAGE`.
 */
import type { Config } from "../config";
import { LocalStorage } from "./local";
import { S3Storage } from "./s3";
import type { Storage } from "./types";

export * from "./cleanup";
export * from "./keys";
export { type LocalFile, LocalStorage, type LocalStorageOptions } from "./local";
export { S3Storage, type S3StorageOptions } from "./s3";
export * from "./types";

export type StorageConfig = Pick<
  Config,
  | "STORAGE"
  | "SQLITE_SYNCHRONOUS"
  | "filesDir"
  | "publicUrl"
  | "S3_ENDPOINT"
  | "S3_BUCKET"
  | "S3_REGION"
  | "S3_ACCESS_KEY_ID"
  | "S3_SECRET_ACCESS_KEY"
  | "S3_PUBLIC_URL"
  | "S3_PATH_STYLE"
>;

export function createStorage(config: StorageConfig): Storage {
  if (config.STORAGE === "local") {
    return new LocalStorage({
      root: config.filesDir,
      publicBaseUrl: config.publicUrl,
      // Files are as durable as the rows that point at them: fsynced only when the database is.
      durable: config.SQLITE_SYNCHRONOUS === "FULL",
    });
  }
  if (!config.S3_BUCKET) throw new Error("S3_BUCKET is required when STORAGE=s3");
  return new S3Storage({
    endpoint: config.S3_ENDPOINT,
    bucket: config.S3_BUCKET,
    region: config.S3_REGION,
    accessKeyId: config.S3_ACCESS_KEY_ID,
    secretAccessKey: config.S3_SECRET_ACCESS_KEY,
    publicUrl: config.S3_PUBLIC_URL,
    pathStyle: config.S3_PATH_STYLE,
  });
}
