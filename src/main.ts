#!/usr/bin/env bun
import { UsageError } from "./cli/args";
import { cardsCommand } from "./cli/cards";
import { queueCommand } from "./cli/queue";
import { usersCommand } from "./cli/users";
import { ConfigError, loadConfig } from "./config";
import { openDb } from "./db/client";
import { ApiError } from "./errors";
import { silentLogger } from "./log";
import { createAvatarResolver } from "./render";
import { createServices, startRuntime } from "./runtime";

const HELP = `easel — self-hosted image-generation job server

usage: easel [command]
  serve                         start the HTTP API, workers and schedules (default)
  migrate                       apply database migrations and exit
  queue status [--json]         job counts by status and type
  queue retry <jobId>           re-queue a failed/partial job (failed items only)
  queue cancel <jobId>          cancel a queued or active job
  users create --name N --role admin|app|user   create a user and print its API key once
  cards render <template> <data.json> -o out.png   render a card offline (no server needed)

Configuration comes from the environment (see README.md).`;

async function main(argv: string[]): Promise<number> {
  const [command = "serve", ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const config = loadConfig();
  switch (command) {
    case "serve":
      await startRuntime(config, { handleSignals: true });
      return -1;
    case "migrate":
      openDb(config.databasePath, { synchronous: config.SQLITE_SYNCHRONOUS }).$client.close();
      process.stdout.write(`migrated ${config.databasePath}\n`);
      return 0;
    case "cards":
      return cardsCommand(rest, createAvatarResolver({ guard: { allowPrivate: config.ALLOW_PRIVATE_URLS } }));
    case "queue":
    case "users": {
      const ctx = createServices(config, { log: silentLogger });
      try {
        return command === "queue" ? queueCommand(ctx, rest) : usersCommand(ctx, rest);
      } finally {
        ctx.db.$client.close();
      }
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
    if (err instanceof ConfigError || err instanceof UsageError) {
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
