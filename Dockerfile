# syntax=docker/dockerfile:1
# Easel in one container:  docker run -p 3000:3000 -v easel-data:/app/data <image>
# The Debian-based Bun image matters: sharp's prebuilt libvips needs glibc. No secrets are baked in: with no
# ADMIN_KEY the first start generates one into the volume and prints it once (docker logs).
# scripts/check-deploy.ts (run by the tests) checks this file against the code and replays its steps.

FROM oven/bun:1 AS deps
WORKDIR /app
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production
# The font packages ship every weight as WOFF and WOFF2; cards read WOFF at 400, 600 and 800 only
# (src/render/fonts.ts), so the rest (~240 MB, mostly the CJK fallbacks) stays out of the image.
RUN find node_modules/@fontsource -type f \( -name '*.woff2' -o \( -name '*.woff' ! -name '*-400-normal.woff' \
      ! -name '*-600-normal.woff' ! -name '*-800-normal.woff' \) \) -delete

FROM oven/bun:1 AS runtime
WORKDIR /app
# BUN_JSC_useFTLJIT=0, as `bun start` runs: JavaScriptCore's top JIT tier spent ~15-20 % of a fresh server's
# CPU compiling and gave no measurable speed once compiled (docs/BENCHMARKS.md, "FTL").
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/data \
    BUN_JSC_useFTLJIT=0
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bun.lock bunfig.toml tsconfig.json ./
COPY src ./src
RUN mkdir -p /app/data && chown -R bun:bun /app/data
USER bun
VOLUME /app/data
EXPOSE 3000
# Readiness (database writable, storage reachable, workers running); bun fetches, as curl may be absent.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bun", "-e", "const r = await fetch(`http://127.0.0.1:${process.env.PORT}/api/health`); process.exit(r.ok ? 0 : 1)"]
# `serve` applies pending migrations before listening. On SIGTERM it stops taking jobs, lets running ones
# finish for SHUTDOWN_GRACE_MS (20 s) and releases the rest: give `docker stop` time (-t 30).
STOPSIGNAL SIGTERM
CMD ["bun", "run", "src/main.ts", "serve"]
