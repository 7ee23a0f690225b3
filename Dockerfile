# One image for every Ballast service; docker-compose picks the service by command.
FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY . .
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# The CLI is on PATH for `docker compose exec coordinator-1 ballast status`.
RUN ln -s /app/apps/cli/bin/ballast.mjs /usr/local/bin/ballast
# Named volumes take the ownership of the mount point in the image on first use.
RUN mkdir /data && chown node:node /data
USER node
# The node flags are packages/runtime/src/constants.ts's serviceNodeFlags (a test checks).
# Services run through tsx here, not from the launcher's esbuild bundles (service-bundles.ts):
# a container starts its service once, and /app is not writable by the user `node`.
ENTRYPOINT ["node", "--initial-old-space-size=128", "--import", "tsx"]
