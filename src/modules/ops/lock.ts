import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

/** `easel serve` writes this into DATA_DIR while it runs, so offline commands (restore) can refuse to run. */
export const LOCK_FILE = "easel.pid";

export type ServerInfo = { pid: number; host: string; port: number; startedAt: number };

export type ServerLock = { readonly path: string; release(): void };

/** Records this process as the server on `dataDir`; `release()` removes the file if it is still ours. */
export function writeServerLock(dataDir: string, port: number): ServerLock {
  const path = join(dataDir, LOCK_FILE);
  const info: ServerInfo = { pid: process.pid, host: hostname(), port, startedAt: Date.now() };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(path, `${JSON.stringify(info)}\n`);
  return {
    path,
    release: () => {
      if (readLock(path)?.pid === process.pid) rmSync(path, { force: true });
    },
  };
}

function readLock(path: string): ServerInfo | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as ServerInfo;
  } catch {
    return null;
  }
}

/**
 * The server recorded on `dataDir` if it may still be running: on this host, when its pid is alive; on
 * another host (a volume shared between containers) it cannot be checked, so it counts as running. A file
 * left by a crashed process on this host is ignored.
 */
export function runningServer(dataDir: string): ServerInfo | null {
  const info = readLock(join(dataDir, LOCK_FILE));
  if (!info) return null;
  if (info.host !== hostname()) return info;
  if (info.pid === process.pid) return null;
  try {
    process.kill(info.pid, 0);
    return info;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? info : null;
  }
}
