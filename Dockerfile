# riskwatch: risk monitoring, alerting and protection for QFEX accounts (docs/deployment.md).
#
#   docker build -t riskwatch .
#   docker run -v ./riskwatch.yaml:/etc/riskwatch/riskwatch.yaml:ro \
#              -v riskwatch-state:/var/lib/riskwatch -p 9464:9464 riskwatch
#
# tests/deploy/test_dockerfile.py replays the RUN, USER, ENTRYPOINT and CMD instructions
# of this file in a fresh virtual environment, as the same non-root user, against the
# simulator: keep every install and start command here, in plain shell.
FROM python:3.11-slim-bookworm

# The virtual environment is first on PATH, so `riskwatch` and `python` are its own.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/riskwatch \
    PATH=/opt/riskwatch/bin:$PATH

# A fixed numeric uid/gid, so volume permissions and runAsNonRoot policies can name it.
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /var/lib/riskwatch --shell /usr/sbin/nologin riskwatch

WORKDIR /src

# Dependencies in their own layer, from the lock file: every download is checked against
# its hash (docs/supply-chain.md). The layer is rebuilt only when the lock changes.
COPY requirements/runtime.lock ./runtime.lock
RUN python -m venv /opt/riskwatch \
    && pip install --no-cache-dir --require-hashes -r runtime.lock

# Then the package itself, built by the locked hatchling: no dependency resolution, no
# unpinned build environment.
COPY pyproject.toml ./
COPY README.md ./
COPY riskwatch ./riskwatch
COPY rules ./rules
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && install -d -o riskwatch -g riskwatch -m 0750 /var/lib/riskwatch \
    && install -d -o riskwatch -g riskwatch -m 0750 /var/lib/riskwatch-lease \
    && install -d -m 0755 /etc/riskwatch

# The shipped rule pack; the config (mounted at /etc/riskwatch/riskwatch.yaml) may use
# `rules: [rules/*.yaml]`, relative to its own folder.
COPY rules /etc/riskwatch/rules

WORKDIR /var/lib/riskwatch
USER 10001:10001
VOLUME ["/var/lib/riskwatch"]
EXPOSE 9464
# riskwatch handles SIGTERM: connections and the HTTP server close, exit status 0.
STOPSIGNAL SIGTERM
# slim images have no curl: a Python one-liner asks /healthz on the default port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["riskwatch"]
CMD ["run", "-c", "/etc/riskwatch/riskwatch.yaml"]
