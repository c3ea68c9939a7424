/**
 * `bun run bench <name> [--json]`: runs scripts/bench/<name>.ts, which prints its own results.
 */
import { readdirSync } from "node:fs";

const [name, ...rest] = process.argv.slice(2);
const available = readdirSync(import.meta.dir)
  .filter((f) => f.endsWith(".ts") && !["index.ts", "machine.ts", "server.ts"].includes(f))
  .map((f) => f.replace(/\.ts$/, ""));
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: bun run bench <${available.join("|")}> [--json]\n`);
  process.exit(2);
}
const proc = Bun.spawn(["bun", `${import.meta.dir}/${name}.ts`, ...rest], {
  stdio: ["inherit", "inherit", "inherit"],
});
process.exit(await proc.exited);
