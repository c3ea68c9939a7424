#!/usr/bin/env bun
import { UsageError } from "./cli/args";
import { ConfigError, loadConfig } from "./config";
import type { AppContext } from "./context";
import { ApiError } from "./errors";
import { silentLogger } from "./log";

// Commands load their modules on demand: `easel --help` or a usage error should not pay for the HTTP
// server, the render pool and every provider adapter.

const HELP = `easel — self-hosted image-generation job server

usage: easel [command]
  serve                         start the HTTP API, workers and schedules (default)
  migrate                       apply database migrations and exit
  migrate-data --to postgres://… [--force]   copy the SQLite database in DATA_DIR into PostgreSQL, verified by counts
  queue status [--json]         job counts by status and type
  queue retry <jobId>           re-queue a failed/partial job (failed items only)
  queue cancel <jobId>          cancel a queued or active job
  users create --name N --role admin|app|user [--credits N] [--unlimited]   create a user, print its API key once
  cards render <template> <data.json> -o out.png   render a card offline (no server needed)
  backlog status [--json]       each recipe's ready backlog, in-flight jobs and failure budget
  backlog maintain [--recipe R] [--dry-run] [--wait [--process]]   top the backlog up now
  credits grant|debit <user> <n> [--note T]   change a user's credits (id or external id)
  credits balance <user>        a user's credits and recent ledger
  db stats [--json]             each table's size (data and indexes); SQLite: the file and its free pages,
                                PostgreSQL: rows and dead rows
  db vacuum [--force]           one-off rewrite that switches an older SQLite file to incremental auto-vacuum
  keys list <user>              a user's API keys (prefix, created, last used, expiry, revoked)
  keys create <user> --name N [--expires-in 90d]   create a key, print it once
  keys revoke|rotate <keyId>    revoke a key, or replace it with a new secret (printed once)
  backup <file>                 consistent copy of the database, safe while the server runs
  restore <file> [--force]      replace the database with a checked backup (server stopped)

Configuration comes from the environment (see README.md).`;

type ServiceCommand = (ctx: AppContext, argv: string[]) => number | Promise<number>;

/** Commands that work on the data dir through the services; each loads its module only when it runs. */
const SERVICE_COMMANDS = new Map<string, () => Promise<ServiceCommand>>([
  ["queue", async () => (await import("./cli/queue")).queueCommand],
  ["users", async () => (await import("./cli/users")).usersCommand],
  ["backlog", async () => (await import("./cli/backlog")).backlogCommand],
  ["credits", async () => (await import("./cli/credits")).creditsCommand],
  ["db", async () => (await import("./cli/db")).dbCommand],
  ["keys", async () => (await import("./cli/keys")).keysCommand],
]);

async function main(argv: string[]): Promise<number> {
  const [command = "serve", ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const config = loadConfig();
  const load = SERVICE_COMMANDS.get(command);
  if (load) {
    const [run, { createServices }, { openDatabase }] = await Promise.all([
      load(),
      import("./services"),
      import("./db/open"),
    ]);
    const database = await openDatabase(config);
    const ctx = createServices(config, { log: silentLogger, database });
    try {
      return await run(ctx, rest);
    } finally {
      await database.close();
    }
  }
  switch (command) {
    case "serve": {
      const { startRuntime } = await import("./runtime");
      await startRuntime(config, { handleSignals: true });
      return -1;
    }
    case "migrate": {
      const { migrateCommand } = await import("./cli/migrate");
      return migrateCommand(config);
    }
    case "migrate-data": {
      const { migrateDataCommand } = await import("./cli/migrate-data");
      return migrateDataCommand(config, rest);
    }
    case "cards": {
      const [{ cardsCommand }, { createAvatarResolver }] = await Promise.all([
        import("./cli/cards"),
        import("./render"),
      ]);
      return cardsCommand(
        rest,
        createAvatarResolver({ guard: { allowPrivate: config.ALLOW_PRIVATE_URLS } }),
        config.CARD_RENDERER,
      );
    }
    case "backup":
    case "restore": {
      const { backupCommand, restoreCommand } = await import("./cli/backup");
      return command === "backup" ? backupCommand(config, rest) : restoreCommand(config, rest);
    }
    default:
      throw new UsageError(`unknown command: ${command}\n\n${HELP}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    // A database that cannot be used (corrupt, unreachable, from another version): one line, the file and
    // what to do. Matched by name so `easel --help` does not load the database driver.
    if (err instanceof ConfigError || err instanceof UsageError || err?.name === "DatabaseOpenError") {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof ApiError) {
      process.stderr.write(`${err.code}: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
