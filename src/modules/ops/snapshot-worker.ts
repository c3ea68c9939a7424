/**
 * Runs `VACUUM INTO` for a scheduled snapshot on its own connection in a worker thread: copying a large
 * database takes a while, and bun:sqlite calls block the thread they run on.
 */
import { backupFile } from "./backup";

declare const self: Worker;

export type SnapshotRequest = { databasePath: string; target: string };
export type SnapshotReply = { ok: true } | { ok: false; message: string };

self.onmessage = (event: MessageEvent<SnapshotRequest>) => {
  const { databasePath, target } = event.data;
  let reply: SnapshotReply;
  try {
    backupFile(databasePath, target);
    reply = { ok: true };
  } catch (err) {
    reply = { ok: false, message: (err as Error).message };
  }
  postMessage(reply);
};
