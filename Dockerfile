# ringcache in a container: nothing but the static binary (no libc, no shell, no package manager).
#
#   scripts/build-static                  # target/x86_64-unknown-linux-gnu/release/ringcache
#   docker build -t ringcache:local .     # needs no registry: FROM scratch pulls nothing
#
# The image runs a node by default (`docker run ringcache:local` listens on 7001); give other
# arguments to run something else: `router --config /etc/ringcache/cluster.toml`, `--help`, ….
# .dockerignore sends only the binary as the build context.
FROM scratch

COPY target/x86_64-unknown-linux-gnu/release/ringcache /ringcache

# A numeric user: there is no /etc/passwd to look a name up in.
USER 10001:10001

# tracing writes plain text for `docker logs`; RUST_LOG (e.g. debug) overrides the info level.
ENV NO_COLOR=1 \
    RINGCACHE_HEALTH_ADDR=127.0.0.1:7001

# 7000 router (RESP), 7001 node, 9121 router metrics; a router's L4 ports depend on its config.
EXPOSE 7000 7001 9121

# No shell here, so the binary checks itself: one PING to RINGCACHE_HEALTH_ADDR (a node's port by
# default; a router container sets 127.0.0.1:7000), +PONG or -NOAUTH is healthy.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/ringcache", "health", "--timeout-ms", "2000"]

ENTRYPOINT ["/ringcache"]
CMD ["node", "--bind", "0.0.0.0", "--port", "7001"]
