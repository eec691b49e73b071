# schema-gate: the gate (serve), the maintenance page (page) and sidecar (sidecar), one image.
#   docker build -t registry.example/schema-gate:0.1.0 .
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Runtime: production dependencies and the compiled code only, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin/schema-gate.js ./bin/schema-gate.js
# Numeric, so the pods' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8443 8480 8080
ENTRYPOINT ["node", "/app/bin/schema-gate.js"]
CMD ["serve"]
