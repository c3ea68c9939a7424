/**
 * Local-disk storage under one root directory (DATA_DIR/files by default).
 *
 * Layout: the object for key `a/b.png` is the plain file `<root>/a/b.png`; its metadata (content type,
 * cache control, ETag) is the sidecar `<root>/a/.b.png.meta.json`. Temp files are `.<name>.<uuid>.tmp`.
 * Keys cannot start a segment with `.`, so sidecars and temp files are never listed or served.
 *
 * Writes are atomic: data and sidecar are each written to a temp file in the target directory and renamed
 * into place, so a reader (and a restarted process) sees the old file or the new one, never a partial one.
 * With `durable`, the files and the directory are also fsynced, so that holds across a power loss too. Writes and deletes
 * of one key are serialised in-process so the pair ends consistent. The sidecar records the size and mtime
 * of the data it describes; a reader that catches the pair mid-replacement (or a file placed by hand)
 * recomputes the ETag from the content instead of trusting a stale one.
 *
 * Every path is resolved with realpath and must stay inside the root's realpath, so a symlink pointing out
 * of the root is treated as missing (reads) or refused (writes).
 */
import { randomUUID } from "node:crypto";
import type { Dirent, Stats } from "node:fs";
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rmdir,
  stat,
  unlink,
} from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { assertValidKey, assertValidPrefix, InvalidKeyError } from "./keys";
import {
  type DeleteManyResult,
  type ListedObject,
  type ObjectMeta,
  type PutOptions,
  type PutResult,
  type Storage,
  StorageError,
  type StoredObject,
  type StreamedObject,
} from "./types";

export type LocalStorageOptions = {
  /** Directory holding the files; created on first write or check. */
  root: string;
  /** Public origin of this server, e.g. `http://localhost:3000`; URLs are `<publicBaseUrl>/files/<key>`. */
  publicBaseUrl: string;
  /**
   * fsync every write (about 0.7 ms a file on a virtio disk): survives power loss, as SQLITE_SYNCHRONOUS=FULL
   * does for the database. Without it a write still survives a process crash. @defaultValue true
   */
  durable?: boolean;
};

type Sidecar = {
  contentType: string;
  cacheControl?: string;
  etag: string;
  /** Size and mtime of the data file this sidecar was written with. */
  bytes: number;
  mtimeMs: number;
};

/** A stored file resolved inside the root, for the /files route to serve with sendfile. */
export type LocalFile = { path: string; meta: ObjectMeta };

export class LocalStorage implements Storage {
  readonly kind = "local" as const;
  readonly root: string;
  private readonly durable: boolean;
  private readonly publicBaseUrl: string;
  private readonly locks = new KeyedLock();
  private realRoot?: Promise<string>;

  constructor(opts: LocalStorageOptions) {
    this.durable = opts.durable ?? true;
    this.root = resolve(opts.root);
    this.publicBaseUrl = opts.publicBaseUrl.replace(/\/+$/, "");
  }

  async put(key: string, bytes: Uint8Array, opts: PutOptions): Promise<PutResult> {
    const file = this.pathOf(key);
    const etag = contentEtag(bytes);
    await this.locks.run(key, async () => {
      try {
        await this.writeObject(key, file, bytes, etag, opts);
      } catch (err) {
        if (err instanceof InvalidKeyError) throw err;
        throw new StorageError("storage_error", `writing ${key} failed: ${errorMessage(err)}`, {
          cause: err,
        });
      }
    });
    return { key, bytes: bytes.byteLength, etag };
  }

  async get(key: string): Promise<StoredObject | null> {
    const file = await this.resolveFile(key);
    if (!file) return null;
    // Stat and read through one handle so size, mtime and bytes all come from the same inode.
    const handle = await openIfExists(file);
    if (!handle) return null;
    try {
      const st = await handle.stat();
      if (!st.isFile()) return null;
      const body = new Uint8Array(await handle.readFile());
      const meta = await this.metaOf(file, st, () => Promise.resolve(body));
      return { key, ...meta, body };
    } finally {
      await handle.close();
    }
  }

  async stream(key: string): Promise<StreamedObject | null> {
    const found = await this.openFile(key);
    if (!found) return null;
    return { key, ...found.meta, stream: Bun.file(found.path).stream() };
  }

  async head(key: string): Promise<ObjectMeta | null> {
    return (await this.openFile(key))?.meta ?? null;
  }

  /** Resolves a key to its file and metadata; null when missing, not a regular file, or outside the root. */
  async openFile(key: string): Promise<LocalFile | null> {
    const file = await this.resolveFile(key);
    if (!file) return null;
    const st = await statIfExists(file);
    if (!st?.isFile()) return null;
    const meta = await this.metaOf(file, st, async () => new Uint8Array(await readFile(file)));
    return { path: file, meta };
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    await this.locks.run(key, async () => {
      if (!(await this.isInsideRoot(dirname(file)))) return;
      await unlinkIfExists(file);
      await unlinkIfExists(sidecarPath(file));
      await this.pruneEmptyDirs(dirname(file));
    });
  }

  /**
   * Deletes a directory's keys together (retention hands over hundreds at a time): its realpath is checked
   * and emptied directories pruned once per directory, not once per key. Keys go one after another (a
   * key's file and sidecar together): callers wanting more run several calls at once, and hundreds of
   * unlinks in flight would take the CPU from the event loop (measured: retention's slices ran 45 % longer).
   */
  async deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    const byDir = new Map<string, { key: string; file: string }[]>();
    for (const key of new Set(keys)) {
      const file = this.pathOf(key);
      const dir = dirname(file);
      const files = byDir.get(dir) ?? [];
      byDir.set(dir, files);
      files.push({ key, file });
    }
    for (const [dir, files] of byDir) {
      if (!(await this.isInsideRoot(dir))) continue;
      for (const { key, file } of files) {
        await this.locks.run(key, async () => {
          await Promise.all([unlinkIfExists(file), unlinkIfExists(sidecarPath(file))]);
        });
      }
      await this.pruneEmptyDirs(dir);
    }
    return { deleted: keys.length };
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    assertValidPrefix(prefix);
    const slash = prefix.lastIndexOf("/");
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : "";
    const start = dirKey ? join(this.root, ...dirKey.split("/")) : this.root;
    if (!(await this.isInsideRoot(start))) return;
    for await (const item of walk(start, dirKey)) {
      if (item.key.startsWith(prefix)) yield item;
    }
  }

  /**
   * Deletes temp files (`.<name>.<uuid>.tmp`, `.probe-<uuid>`) last modified more than `olderThanMs` ago:
   * what a process killed mid-write leaves behind. list() never shows them, so the orphan sweep cannot see
   * them; a live write touches its temp file continuously and is done in far less than the grace period.
   * Returns how many it deleted.
   */
  async sweepTempFiles(olderThanMs: number, now = Date.now()): Promise<number> {
    const cutoff = now - olderThanMs;
    let deleted = 0;
    for await (const path of walkTempFiles(this.root)) {
      const st = await statIfExists(path);
      if (!st || st.mtimeMs > cutoff) continue;
      if ((await unlinkIfExists(path)) !== null) deleted++;
    }
    return deleted;
  }

  publicUrl(key: string): string {
    return `${this.publicBaseUrl}/files/${assertValidKey(key)}`;
  }

  async check(): Promise<void> {
    const probe = join(this.root, `.probe-${randomUUID()}`);
    try {
      await mkdir(this.root, { recursive: true });
      await Bun.write(probe, "ok");
      if ((await readFile(probe, "utf8")) !== "ok") throw new Error("probe read back different bytes");
    } catch (err) {
      throw new StorageError("storage_unavailable", `${this.root} is not writable: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      await unlinkIfExists(probe).catch(() => undefined);
    }
  }

  /** The lexical path of a key; the key grammar already rules out escapes, this re-checks it. */
  private pathOf(key: string): string {
    const file = join(this.root, ...assertValidKey(key).split("/"));
    if (!file.startsWith(this.root + sep)) throw new InvalidKeyError(key, "resolves outside the root");
    return file;
  }

  /**
   * The real path of an existing key inside the root, or null (missing, or a symlink out of the root).
   * Only the directory goes through realpath: realpath of the file itself fails with ENOENT when a put
   * renames a new version over it at that moment (the old inode is unlinked under it), which made a reader
   * see no object at all mid-replace. Directories are never replaced, and a rename keeps the name bound.
   */
  private async resolveFile(key: string): Promise<string | null> {
    const lexical = this.pathOf(key);
    const dir = await realpathIfExists(dirname(lexical));
    if (!dir) return null;
    const root = await this.rootRealpath();
    if (dir !== root && !dir.startsWith(root + sep)) return null;
    const file = join(dir, basename(lexical));
    const st = await lstatIfExists(file);
    if (!st) return null;
    if (!st.isSymbolicLink()) return file;
    // A symlink placed by hand is followed only while it stays inside the root.
    const real = await realpathIfExists(file);
    return real?.startsWith(root + sep) ? real : null;
  }

  private rootRealpath(): Promise<string> {
    this.realRoot ??= mkdir(this.root, { recursive: true })
      .then(() => realpath(this.root))
      .catch((err: unknown) => {
        this.realRoot = undefined; // let a later call retry once the disk is back
        throw err;
      });
    return this.realRoot;
  }

  /** True when the deepest existing ancestor of `path` (itself included) is really inside the root. */
  private async isInsideRoot(path: string): Promise<boolean> {
    const root = await this.rootRealpath();
    let probe = path;
    for (;;) {
      const real = await realpathIfExists(probe);
      if (real) return real === root || real.startsWith(root + sep);
      const parent = dirname(probe);
      if (parent === probe) return false;
      probe = parent;
    }
  }

  private async writeObject(
    key: string,
    file: string,
    bytes: Uint8Array,
    etag: string,
    opts: PutOptions,
  ): Promise<void> {
    const dir = dirname(file);
    // Check before mkdir too: mkdir -p through a symlinked directory would create directories outside.
    if (!(await this.isInsideRoot(dir))) throw new InvalidKeyError(key, "directory escapes the root");
    const dataTemp = await writeTemp(file, bytes, this.durable);
    let sideTemp: string | undefined;
    try {
      if (!(await this.isInsideRoot(dir))) throw new InvalidKeyError(key, "directory escapes the root");
      const sidecar: Sidecar = {
        ...pickPutOptions(opts),
        etag,
        bytes: dataTemp.size,
        mtimeMs: dataTemp.mtimeMs,
      };
      const sideBytes = new TextEncoder().encode(JSON.stringify(sidecar));
      sideTemp = (await writeTemp(sidecarPath(file), sideBytes, this.durable)).path;
      await rename(dataTemp.path, file);
      await rename(sideTemp, sidecarPath(file));
      if (this.durable) await fsyncDir(dir);
    } catch (err) {
      await unlinkIfExists(dataTemp.path).catch(() => undefined);
      if (sideTemp) await unlinkIfExists(sideTemp).catch(() => undefined);
      throw err;
    }
  }

  private async metaOf(file: string, st: Stats, readBody: () => Promise<Uint8Array>): Promise<ObjectMeta> {
    const side = await readSidecar(sidecarPath(file));
    const fresh = side !== undefined && side.bytes === st.size && side.mtimeMs === st.mtimeMs;
    const meta: ObjectMeta = {
      contentType: side?.contentType ?? (Bun.file(file).type || "application/octet-stream"),
      bytes: st.size,
      etag: fresh ? side.etag : contentEtag(await readBody()),
      lastModified: Math.floor(st.mtimeMs),
    };
    if (side?.cacheControl !== undefined) meta.cacheControl = side.cacheControl;
    return meta;
  }

  /** Removes directories left empty by a delete, up to (not including) the root. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    let current = dir;
    while (current.startsWith(this.root + sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (or already gone): stop climbing
      }
      current = dirname(current);
    }
  }
}

/** Serialises async work per key, in this process. */
class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release: () => void = () => undefined;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** A quoted strong ETag from the content (128 bits of SHA-256). */
export function contentEtag(bytes: Uint8Array): string {
  const hex = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  return `"${hex.slice(0, 32)}"`;
}

function pickPutOptions(opts: PutOptions): Pick<Sidecar, "contentType" | "cacheControl"> {
  return opts.cacheControl === undefined
    ? { contentType: opts.contentType }
    : { contentType: opts.contentType, cacheControl: opts.cacheControl };
}

function sidecarPath(file: string): string {
  return join(dirname(file), `.${basename(file)}.meta.json`);
}

type TempFile = { path: string; size: number; mtimeMs: number };

/**
 * Writes `bytes` to a new temp file beside `target` and fsyncs it. Creates the directory as needed,
 * retrying when a concurrent delete prunes it between mkdir and open.
 */
async function writeTemp(target: string, bytes: Uint8Array, sync: boolean): Promise<TempFile> {
  const path = join(dirname(target), `.${basename(target)}.${randomUUID()}.tmp`);
  for (let attempt = 1; ; attempt++) {
    await mkdir(dirname(target), { recursive: true });
    let handle: FileHandle;
    try {
      handle = await open(path, "wx", 0o644);
    } catch (err) {
      if (errnoCode(err) === "ENOENT" && attempt < 3) continue;
      throw err;
    }
    try {
      await handle.writeFile(bytes);
      if (sync) await handle.sync();
      const st = await handle.stat();
      return { path, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      await unlinkIfExists(path).catch(() => undefined);
      throw err;
    } finally {
      await handle.close();
    }
  }
}

/** Makes the renames durable; some filesystems refuse fsync on a directory, which costs only durability. */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r").catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync().catch(() => undefined);
  } finally {
    await handle.close();
  }
}

async function readSidecar(path: string): Promise<Sidecar | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<Sidecar>;
    if (typeof parsed.contentType !== "string" || typeof parsed.etag !== "string") return undefined;
    return parsed as Sidecar;
  } catch {
    return undefined; // missing or unreadable: fall back to sniffing and hashing
  }
}

async function* walk(dir: string, keyPrefix: string): AsyncIterable<ListedObject> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return;
    throw err;
  }
  for (const entry of entries) {
    // Dot-names are sidecars, temp files and probes; symlinks are never followed.
    if (entry.name.startsWith(".") || entry.isSymbolicLink()) continue;
    const key = keyPrefix ? `${keyPrefix}/${entry.name}` : entry.name;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      yield* walk(path, key);
    } else if (entry.isFile()) {
      const st = await statIfExists(path);
      if (st) yield { key, lastModified: Math.floor(st.mtimeMs), bytes: st.size };
    }
  }
}

/** `.<name>.<uuid>.tmp` from writeTemp, `.probe-<uuid>` from check(). */
const TEMP_FILE =
  /^\.(?:.+\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp|probe-[0-9a-f-]{36})$/;

/** Temp files anywhere under `dir` (symlinks are never followed). */
async function* walkTempFiles(dir: string): AsyncIterable<string> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === "ENOENT" || errnoCode(err) === "ENOTDIR") return;
    throw err;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walkTempFiles(path);
    else if (entry.isFile() && TEMP_FILE.test(entry.name)) yield path;
  }
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const MISSING = new Set(["ENOENT", "ENOTDIR"]);

async function ifExists<T>(fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    if (MISSING.has(errnoCode(err) ?? "")) return null;
    throw err;
  }
}

const realpathIfExists = (path: string) => ifExists(() => realpath(path));
const statIfExists = (path: string) => ifExists(() => stat(path));
const lstatIfExists = (path: string) => ifExists(() => lstat(path));
const openIfExists = (path: string) => ifExists(() => open(path, "r"));
const unlinkIfExists = (path: string) => ifExists(() => unlink(path));
