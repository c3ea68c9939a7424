/** Renders a provider's capability table as docs/providers.md shows it (the docs test keeps the two equal). */
import {
  describeSizes,
  type ModelCapabilities,
  type ProviderCapabilities,
} from "../../src/providers/capabilities";

const INPUT: Record<ModelCapabilities["input"], string> = {
  text: "text only",
  edit: "edits only",
  both: "text or edit",
};

function row(name: string, c: ModelCapabilities): string {
  const edits =
    c.input === "text"
      ? "—"
      : `${c.maxInputImages} image${c.maxInputImages === 1 ? "" : "s"}${c.mask ? " + mask" : ""}`;
  const cells = [
    name,
    INPUT[c.input],
    edits,
    describeSizes(c.sizes),
    String(c.imagesPerCall),
    c.negativePrompt,
    c.seed ? "yes" : "no",
    c.outputFormats.join(", "),
  ];
  return `| ${cells.join(" | ")} |`;
}

export function capabilityTable(table: ProviderCapabilities): string {
  const lines = [
    "| model | input | edit inputs | sizes | images per call | negative prompt | seed | output formats |",
    "|---|---|---|---|---|---|---|---|",
    ...Object.entries(table.models).map(([name, c]) => row(`\`${name}\``, c)),
  ];
  if (table.anyModel) lines.push(row("any model", table.anyModel));
  return lines.join("\n");
}
