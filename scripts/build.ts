/**
 * `bun run build`: compiles Easel into one self-contained executable, `dist/easel` (`--outfile` to change),
 * for the platform it runs on. Everything is embedded: the code and its worker threads, the migrations
 * (inlined by the Bun macro in src/db/embed-migrations.ts), the fonts and emoji the card templates read, resvg's native addon
 * (Bun embeds `.node` files), sharp's addon with its libvips, which Bun cannot embed by itself — see
 * `sharpPlugin` — and takumi's addon (`takumiPlugin`). The result runs `easel serve` and every CLI command with no node_modules beside it.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const ROOT = resolve(import.meta.dir, "..");
const require = createRequire(join(ROOT, "package.json"));

/**
 * Worker threads are separate entrypoints of the same executable, placed flat at the root of its virtual
 * file system (so their file names must differ).
 */
const ENTRYPOINTS = [
  "src/main.ts",
  "src/db/checkpoint-worker.ts",
  "src/queue/retention-worker.ts",
  "src/render/worker.ts",
  "src/modules/ops/snapshot-worker.ts",
];

/** Packages whose files the code reads from disk at runtime, and the files of each that are embedded. */
const EMBEDDED_PACKAGES: { name: string; files: (file: string) => boolean }[] = [
  {
    name: "@fontsource/inter",
    files: (f) => f === "package.json" || f === "unicode.json" || /^files\/.+-normal\.woff$/.test(f),
  },
  // The fallback fonts for other scripts (src/render/fonts.ts): their subset table and the weights the
  // templates use, as WOFF (CJK: ~15 MB each of the 9 weights × 2 formats their packages ship).
  ...[
    "noto-sans-jp",
    "noto-sans-kr",
    "noto-sans-sc",
    "noto-sans-tc",
    "noto-kufi-arabic",
    "noto-sans-hebrew",
    "noto-sans-devanagari",
    "noto-sans-thai",
  ].map((id) => ({
    name: `@fontsource/${id}`,
    files: (f: string) =>
      f === "package.json" || f === "unicode.json" || /^files\/.+-(400|600|800)-normal\.woff$/.test(f),
  })),
  { name: "@twemoji/svg", files: (f) => f === "package.json" || f.endsWith(".svg") },
  {
    name: "swagger-ui-dist",
    files: (f) => ["package.json", "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"].includes(f),
  },
];

/**
 * Directories the code reads as `join(import.meta.dir, "<name>")`: embedded as `<name>` at the root of the
 * executable's file system, which is `import.meta.dir` there.
 */
const EMBEDDED_DIRS = ["src/modules/dashboard/assets"];

/** Directory name of the embedded packages inside the executable's virtual file system. */
const ASSETS = "easel-assets";

const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));

function listFiles(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

/** Copies the embedded packages' files into `<stage>/easel-assets/<name>/…`; returns that directory. */
function stageAssets(stage: string): string {
  const out = join(stage, ASSETS);
  for (const pkg of EMBEDDED_PACKAGES) {
    const from = packageDir(pkg.name);
    for (const file of listFiles(from).filter(pkg.files)) {
      mkdirSync(dirname(join(out, pkg.name, file)), { recursive: true });
      cpSync(join(from, file), join(out, pkg.name, file));
    }
  }
  return out;
}

/**
 * Code that finds an embedded package with `require.resolve("<pkg>/package.json")` (src/render/fonts.ts,
 * emoji.ts) or `Bun.resolveSync("<pkg>/package.json", …)` (src/modules/docs) gets the embedded copy instead:
 * in a compiled executable `import.meta.dir` is the root of the virtual file system the assets live in.
 * Fails the build when a package is embedded but never looked up, so a change in how the code finds it
 * cannot silently ship a binary that renders without fonts.
 */
function embeddedPackagesPlugin(): Bun.BunPlugin & { unused(): string[] } {
  const used = new Set<string>();
  const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const patterns = EMBEDDED_PACKAGES.map((p) => ({
    name: p.name,
    re: new RegExp(
      `(?:require\\.resolve|Bun\\.resolveSync)\\(\\s*["'\`]${escapeRe(p.name)}/package\\.json["'\`]\\s*(?:,[^)]*)?\\)`,
      "g",
    ),
  }));
  return {
    name: "easel-embedded-packages",
    unused: () => EMBEDDED_PACKAGES.map((p) => p.name).filter((n) => !used.has(n)),
    setup(build) {
      build.onLoad({ filter: /[\\/]src[\\/].+\.ts$/ }, (args) => {
        let text = readFileSync(args.path, "utf8");
        if (!/require\.resolve|Bun\.resolveSync/.test(text)) return { contents: text, loader: "ts" };
        for (const { name, re } of patterns) {
          text = text.replace(re, () => {
            used.add(name);
            return `(import.meta.dir + ${JSON.stringify(`/${ASSETS}/${name}/package.json`)})`;
          });
        }
        return { contents: text, loader: "ts" };
      });
    },
  };
}

/** sharp's platform package and its libvips for this machine (what `bun install` picked). */
function sharpNative(): { addon: string; libvips: string; soname: string } {
  const platform = `${process.platform}${isMusl() ? "musl" : ""}-${process.arch}`;
  const addonDir = join(packageDir(`@img/sharp-${platform}`), "lib");
  const vipsDir = join(dirname(require.resolve(`@img/sharp-libvips-${platform}/package.json`)), "lib");
  const addon = readdirSync(addonDir).find((f) => f.endsWith(".node"));
  const libvips = readdirSync(vipsDir).find((f) => f.startsWith("libvips-cpp"));
  if (!addon || !libvips)
    throw new Error(`sharp's native files for ${platform} are missing: run bun install`);
  return { addon: join(addonDir, addon), libvips: join(vipsDir, libvips), soname: libvips };
}

function isMusl(): boolean {
  if (process.platform !== "linux") return false;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}

/**
 * sharp loads its addon through `createRequire` with computed names, which the bundler cannot follow, and
 * the addon links against libvips by file name. The replacement module embeds both: libvips is written to a
 * private temp dir and loaded (then the file is removed; the mapping stays), after which the addon — embedded
 * and loaded by Bun — finds it already in the process by its soname. Worker threads find it there too.
 */
function sharpPlugin(): Bun.BunPlugin & { hit(): boolean } {
  const native = sharpNative();
  let hit = false;
  const contents = `
import { dlopen } from "bun:ffi";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import libvipsFile from ${JSON.stringify(native.libvips)} with { type: "file" };

const probe = { vips_version: { args: ["i32"], returns: "i32" } };
function loadLibvips() {
  try {
    return dlopen(${JSON.stringify(native.soname)}, probe);
  } catch {
    const dir = mkdtempSync(join(tmpdir(), "easel-libvips-"));
    try {
      const path = join(dir, ${JSON.stringify(native.soname)});
      writeFileSync(path, readFileSync(libvipsFile), { mode: 0o500 });
      return dlopen(path, probe);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
globalThis.__easelLibvips ??= loadLibvips();
const sharp = require(${JSON.stringify(native.addon)});
export default sharp;
`;
  return {
    name: "easel-embedded-sharp",
    hit: () => hit,
    setup(build) {
      build.onLoad({ filter: /[\\/]sharp[\\/]dist[\\/]sharp\.mjs$/ }, () => {
        hit = true;
        return { contents, loader: "js" };
      });
    },
  };
}

/**
 * Takumi (CARD_RENDERER=takumi) picks its native addon with a chain of guarded requires, one per platform,
 * which the executable cannot satisfy from its own file system. The loader gets an early return of this
 * platform's addon by its absolute path, which Bun then embeds like any `.node` file.
 */
function takumiPlugin(): Bun.BunPlugin & { hit(): boolean } {
  const platform = `${process.platform}-${process.arch}${process.platform === "linux" ? (isMusl() ? "-musl" : "-gnu") : ""}`;
  const pkg = `@takumi-rs/core-${platform}`;
  const addon = join(packageDir(pkg), `core.${platform}.node`);
  let hit = false;
  return {
    name: "easel-embedded-takumi",
    hit: () => hit,
    setup(build) {
      build.onLoad({ filter: /[\\/]@takumi-rs[\\/]core[\\/]dist[\\/]export\.mjs$/ }, (args) => {
        const text = readFileSync(args.path, "utf8");
        const start = "function requireNative() {";
        if (!text.includes(start)) throw new Error("takumi's loader changed (update scripts/build.ts)");
        hit = true;
        return {
          contents: text.replace(start, `${start}\n\treturn require(${JSON.stringify(addon)});`),
          loader: "js",
        };
      });
    },
  };
}

export async function build(outfile: string): Promise<void> {
  const names = ENTRYPOINTS.map((e) => basename(e));
  if (new Set(names).size !== names.length) throw new Error(`entrypoint file names must differ: ${names}`);
  const stage = mkdtempSync(join(tmpdir(), "easel-build-"));
  try {
    const assets = stageAssets(stage);
    const embedded = embeddedPackagesPlugin();
    const sharp = sharpPlugin();
    const takumi = takumiPlugin();
    const result = await Bun.build({
      entrypoints: ENTRYPOINTS.map((e) => join(ROOT, e)),
      compile: {
        outfile,
        assets: [assets, ...EMBEDDED_DIRS.map((d) => join(ROOT, d))],
        autoloadDotenv: true,
      },
      plugins: [embedded, sharp, takumi],
      // Flat names: worker code does `new Worker(new URL("./worker.ts", import.meta.url))`, and in the
      // executable import.meta.url is the root of its virtual file system, where the entry files must be.
      naming: { entry: "[name].[ext]" },
      minify: { syntax: true, whitespace: true },
    });
    if (!result.success) throw new AggregateError(result.logs, "bun build failed");
    const unused = embedded.unused();
    if (unused.length) throw new Error(`embedded but never looked up (update scripts/build.ts): ${unused}`);
    if (!sharp.hit()) throw new Error("sharp's loader was not replaced (update scripts/build.ts)");
    if (!takumi.hit()) throw new Error("takumi's loader was not replaced (update scripts/build.ts)");
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { outfile: { type: "string" } } });
  const outfile = resolve(values.outfile ?? join(ROOT, "dist", "easel"));
  mkdirSync(dirname(outfile), { recursive: true });
  const t0 = performance.now();
  await build(outfile);
  process.stdout.write(`built ${outfile} in ${Math.round(performance.now() - t0)} ms\n`);
}
