# One image for every Ballast service; docker-compose picks the service by command.
FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# glibc's malloc settings for every service: packages/runtime/src/constants.ts's
# serviceMallocTunables (a test checks).
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=33554432
COPY . .
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Services and the CLI run from esbuild bundles built here, once (/app is not writable by
# the user `node` at run time), linked as /app/bundles/<name>.mjs: coordinator, headnode,
# sled, gateway and cli (apps/cli/src/install-bundles.ts). A service starts on about a
# third of the CPU it took through tsx, and so does every healthcheck's `ballast status`.
RUN node --import tsx apps/cli/src/install-bundles.ts /app/bundles
# The CLI is on PATH for `docker compose exec coordinator-1 ballast status`.
RUN printf '#!/bin/sh\nexec node --enable-source-maps /app/bundles/cli.mjs "$@"\n' \
      > /usr/local/bin/ballast && chmod 755 /usr/local/bin/ballast
# Named volumes take the ownership of the mount point in the image on first use.
RUN mkdir /data && chown node:node /data
USER node
# The node flags are packages/runtime/src/constants.ts's serviceNodeFlags (a test checks);
# --enable-source-maps makes stack traces in logs name the .ts files.
ENTRYPOINT ["node", "--initial-old-space-size=128", "--enable-source-maps"]
