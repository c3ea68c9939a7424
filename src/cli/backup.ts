import { resolve } from "node:path";
import type { Config } from "../config";
import { BackupError, backupFile, restoreFile } from "../modules/ops/backup";
import { LOCK_FILE, runningServer } from "../modules/ops/lock";
import { parse, UsageError } from "./args";

const BACKUP_USAGE = "usage: easel backup <file>";
const RESTORE_USAGE = "usage: easel restore <file> [--force]";

/**
 * In PostgreSQL mode the data is not a file Easel can copy: say which tools do it, and fail (a backup script
 * must not think it made one).
 */
function refusedOnPostgres(config: Config, command: "backup" | "restore"): boolean {
  if (!config.DATABASE_URL) return false;
  const tool = command === "backup" ? "pg_dump" : "pg_restore or psql";
  process.stderr.write(
    `easel ${command}: DATABASE_URL is set, so the data is in PostgreSQL: use PostgreSQL's own tools (${tool}, or your provider's managed snapshots); easel ${command} handles only the SQLite database in DATA_DIR\n`,
  );
  return true;
}

/** `easel backup <file>`: a consistent copy of the database, safe while the server runs. */
export function backupCommand(config: Config, argv: string[]): number {
  if (refusedOnPostgres(config, "backup")) return 1;
  const { positionals } = parse(argv, {});
  const [file] = positionals;
  if (!file || positionals.length > 1) throw new UsageError(BACKUP_USAGE);
  const target = resolve(file);
  return run(() => {
    const { bytes } = backupFile(config.databasePath, target);
    process.stdout.write(`backed up ${config.databasePath} to ${target} (${bytes} bytes)\n`);
  });
}

/**
 * `easel restore <file>`: replaces the database with a checked backup. Refuses while a server runs on the
 * data dir (its pid file); `--force` skips that check for a pid file left on another host.
 */
export function restoreCommand(config: Config, argv: string[]): number {
  if (refusedOnPostgres(config, "restore")) return 1;
  const { values, positionals } = parse(argv, { force: { type: "boolean" } });
  const [file] = positionals;
  if (!file || positionals.length > 1) throw new UsageError(RESTORE_USAGE);
  return run(() => {
    const server = values.force ? null : runningServer(config.dataDir);
    if (server) {
      throw new BackupError(
        "server_running",
        `a server (pid ${server.pid} on ${server.host}, port ${server.port}) uses ${config.dataDir}; ` +
          `stop it first (or, if it is not running, delete ${LOCK_FILE} there or pass --force)`,
      );
    }
    const { previous } = restoreFile(resolve(file), config.databasePath);
    process.stdout.write(`restored ${config.databasePath} from ${resolve(file)}\n`);
    if (previous) process.stdout.write(`the previous database is kept at ${previous}\n`);
  });
}

function run(action: () => void): number {
  try {
    action();
    return 0;
  } catch (err) {
    if (!(err instanceof BackupError)) throw err;
    process.stderr.write(`${err.code}: ${err.message}\n`);
    return 1;
  }
}
