import { readFileSync, writeFileSync } from "node:fs";
import { CardDataError, type EngineName, type ImageResolver, prepareCardData, renderCard } from "../render";
import { parse, UsageError } from "./args";

const USAGE = "usage: easel cards render <template> <data.json> -o <out.png>";

/** `easel cards render`: renders a card offline, without a server or a database, with the configured engine. */
export async function cardsCommand(
  argv: string[],
  resolveImage: ImageResolver,
  engine: EngineName = "satori",
): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: "string", short: "o" } });
  const [sub, template, dataPath] = positionals;
  if (sub !== "render" || !template || !dataPath || !values.out) throw new UsageError(USAGE);
  const data = JSON.parse(readFileSync(dataPath, "utf8"));
  let prepared: unknown;
  try {
    prepared = await prepareCardData(template, data, resolveImage);
  } catch (err) {
    if (!(err instanceof CardDataError)) throw err;
    const first = (err.details as { path: PropertyKey[]; message: string }[])[0];
    process.stderr.write(
      `invalid data for ${template}: ${first?.path.map(String).join(".")}: ${first?.message}\n`,
    );
    return 1;
  }
  const card = await renderCard(template, prepared, engine);
  writeFileSync(values.out, card.png);
  process.stdout.write(`wrote ${values.out} (${card.width}x${card.height}, ${card.png.byteLength} bytes)\n`);
  return 0;
}
