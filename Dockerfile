# schema-gate: the gate (serve), the maintenance page (page) and sidecar (sidecar), one image.
#   docker build -t registry.example/schema-gate:0.1.0 .
# NODE_IMAGE picks another Node.js 20 base (a mirror): --build-arg NODE_IMAGE=mirror.example/node:20-bookworm-slim
# `npm run test:image` builds it and runs the gate's integration suites from the image.
# Build stage: type-check the TypeScript and bundle it into one file (tools/bundle.mjs) with the dev dependencies.
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY tools/bundle.mjs ./tools/bundle.mjs
COPY src ./src
RUN npm run build

# Runtime: production dependencies and the compiled code only, as a non-root user.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin/schema-gate.js ./bin/schema-gate.js
# Numeric, so the pods' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8443 8480 8080
# Memory (npm run bench:footprint): a 1 MB young generation instead of 16 MB and V8's
# size-over-speed heuristics keep the gate's heap small; two malloc arenas (not one per
# thread) and a fixed trim threshold (glibc otherwise raises it up to 64 MB after large
# frees, and keeps what a burst of watch events or requests used) give memory back. The
# webhook's latency stays within its target with these (npm run bench:webhook).
ENV MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072
ENTRYPOINT ["node", "--max-semi-space-size=1", "--optimize-for-size", "/app/bin/schema-gate.js"]
CMD ["serve"]
