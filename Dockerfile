# The webhook service: one image for the API, the worker (PROCESS_ROLE) and the one-shot
# migration (CMD node dist/src/database/migrate.js). Node 24 LTS, multi-stage, non-root.
# The repository is an npm workspace: the library nestjs-transactional-jobs (libs/transactional,
# built to libs/transactional/dist) and the service (built to dist/), which imports it by name.

# Build: every dependency, the library then the service compiled by tsc.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY libs/transactional/package.json ./libs/transactional/
# The bench workspace's manifest only (devDependencies: nothing of it is installed with --omit=dev).
COPY bench/package.json ./bench/
# NOTE: no lifecycle scripts (the library's `prepare` builds it: done below, once its source is here).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY libs/transactional/tsconfig.build.json ./libs/transactional/
COPY libs/transactional/src ./libs/transactional/src
COPY src ./src
# NOTE: scripts/, bench/ and test/ are never copied: no dev-only code reaches the image.
RUN npm run build

# Production dependencies only (node_modules/nestjs-transactional-jobs links to libs/transactional).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY libs/transactional/package.json ./libs/transactional/
# The bench workspace's manifest only (devDependencies: nothing of it is installed with --omit=dev).
COPY bench/package.json ./bench/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    PORT=3000 \
    HEALTH_PORT=3001
# Owned by root and read-only for the user that runs the service.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/libs/transactional/package.json ./libs/transactional/package.json
COPY --from=build /app/libs/transactional/dist ./libs/transactional/dist
COPY --from=build /app/dist ./dist
USER node
# 3000: the API (PROCESS_ROLE all or api); 3001: a worker's health checks.
EXPOSE 3000 3001
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "dist/src/health/healthcheck.js"]
CMD ["node", "dist/src/main.js"]
