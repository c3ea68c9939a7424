import type { Queue } from "../queue";
import { parse, printJsonOr, UsageError } from "./args";

/** What this file needs from the services, and nothing more. */
type Deps = { queue: Queue };

const USAGE = "usage: easel queue status [--json] | queue retry <jobId> | queue cancel <jobId>";

/** `easel queue …`: the same services the HTTP API uses, straight on the database file. */
export async function queueCommand(ctx: Deps, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: "boolean" } });
  const [sub, id] = positionals;
  const { queue } = ctx;
  switch (sub) {
    case "status": {
      const stats = await queue.stats();
      const debounced = await queue.debounced();
      printJsonOr(Boolean(values.json), { ...stats, debounced }, () => {
        const lines = [
          `waiting ${stats.waiting}  delayed ${stats.delayed}  active ${stats.active}`,
          `completed ${stats.completed}  partial ${stats.partial}  failed ${stats.failed}  cancelled ${stats.cancelled}`,
        ];
        for (const [type, counts] of Object.entries(stats.byType)) {
          lines.push(
            `  ${type.padEnd(20)} ${Object.entries(counts)
              .map(([s, n]) => `${s}=${n}`)
              .join(" ")}`,
          );
        }
        if (debounced.length) lines.push(`debounced keys: ${debounced.map((d) => d.dedupeKey).join(", ")}`);
        return lines.join("\n");
      });
      return 0;
    }
    case "retry": {
      if (!id) throw new UsageError(USAGE);
      const out = await queue.retry(id);
      if (out === "conflict") return fail("a newer job with the same dedupe key is queued");
      if (!out) return fail(`job ${id} not found or not failed/partial/cancelled`);
      process.stdout.write(`queued ${id} again\n`);
      return 0;
    }
    case "cancel": {
      if (!id) throw new UsageError(USAGE);
      const out = await queue.cancel(id);
      if (!out) return fail(`job ${id} not found or already finished`);
      process.stdout.write(`cancelled ${id}\n`);
      return 0;
    }
    default:
      throw new UsageError(USAGE);
  }
}

function fail(message: string): number {
  process.stderr.write(`${message}\n`);
  return 1;
}
