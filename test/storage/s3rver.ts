/**
 * A real S3 protocol server (s3rver) on a loopback port, with its data in a temp dir.
 *
 *   const s3 = await startS3rver(["bucket"]);
 *   new S3Storage({ ...s3.credentials, endpoint: s3.endpoint, bucket: "bucket" });
 *   await s3.stop();
 *
 * s3rver was written for Node; two Node behaviours it relies on differ under Bun, and both break paged
 * listing (ListObjectsV2 with a continuation token), so `startS3rver` adapts them first:
 * - it walks directories assuming `readdirSync` is sorted (libuv sorts; Bun does not) — sorted here, only
 *   for paths inside s3rver's own temp directories;
 * - it encrypts continuation tokens with the cipher name `des`, an OpenSSL alias of `des-cbc` that Bun
 *   does not register — mapped to `des-cbc`.
 * Neither change alters results for any other caller.
 */
import crypto from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";

export type RunningS3rver = {
  endpoint: string;
  /** s3rver checks the access key id (it ignores SigV4 signatures); these are its built-in ones. */
  credentials: { accessKeyId: string; secretAccessKey: string; region: string };
  stop(): Promise<void>;
};

const DIR_PREFIX = join(tmpdir(), "easel-s3rver-");

export async function startS3rver(buckets: string[]): Promise<RunningS3rver> {
  adaptNodeBehaviours();
  const directory = await mkdtemp(DIR_PREFIX);
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    directory,
    silent: true,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const address = await server.run();
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER", region: "us-east-1" },
    async stop() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

let adapted = false;

function adaptNodeBehaviours(): void {
  if (adapted) return;
  adapted = true;
  // s3rver reads the file system through its own fs-extra instance, which copied fs's functions at load.
  const fs = createRequire(require.resolve("s3rver"))("fs-extra") as typeof import("node:fs");
  const readdirSync = fs.readdirSync;
  const sortedInsideS3rver = (path: unknown, ...rest: unknown[]) => {
    const entries: string[] = Reflect.apply(readdirSync, fs, [path, ...rest]);
    return typeof path === "string" && path.startsWith(DIR_PREFIX) && rest.length === 0
      ? entries.sort()
      : entries;
  };
  Object.assign(fs, { readdirSync: sortedInsideS3rver });

  const desAlias = (alg: string) => (alg.toLowerCase() === "des" ? "des-cbc" : alg);
  const { createCipheriv, createDecipheriv } = crypto;
  Object.assign(crypto, {
    createCipheriv: (alg: string, ...rest: unknown[]) =>
      Reflect.apply(createCipheriv, crypto, [desAlias(alg), ...rest]),
    createDecipheriv: (alg: string, ...rest: unknown[]) =>
      Reflect.apply(createDecipheriv, crypto, [desAlias(alg), ...rest]),
  });
}
