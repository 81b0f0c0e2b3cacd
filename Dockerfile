# mmd: paper market-making daemon for Bybit V5.
#   docker build -t mmd .
#   docker run -d --name mmd -p 9464:9464 -v mmd-ledger:/var/lib/mmd mmd
# The ledger (SQLite, WAL) lives on the volume /var/lib/mmd; logs are JSON lines on stdout
# (docker logs mmd | jq .). Override the config with -v ./my.toml:/etc/mmd/mmd.toml:ro or with
# MMD_* environment variables (e.g. -e MMD_MARKET__SYMBOLS='["BTCUSDT","ETHUSDT"]').
# Dependencies come from requirements/*-py311.txt (hash-locked; the image's Python is 3.11).

# ---- builder: build a wheel and install it into a self-contained venv ----
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# gcc builds the C order book and the mypyc-compiled per-tick modules; only this stage has it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Exact, hash-checked versions from the lock (scripts/lock.sh): /opt/build holds what building mmd
# needs (setuptools, mypy for mypyc), /opt/mmd what running it needs; nothing is resolved here.
COPY requirements/build-py311.txt requirements/runtime-py311.txt ./requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build-py311.txt \
    && python -m venv /opt/mmd \
    && /opt/mmd/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime-py311.txt
COPY pyproject.toml setup.py README.md* ./
COPY daemon ./daemon
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/mmd/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
    && /opt/mmd/bin/python -I -c "import daemon.core._fastbook, daemon.features.state as s; assert s.__file__.endswith('.so'), s.__file__"

# ---- runtime ----
FROM python:3.11-slim

ENV PATH=/opt/mmd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MMD_OPS__LOG_FORMAT=json

RUN groupadd --system --gid 10001 mmd \
    && useradd --system --uid 10001 --gid mmd --home-dir /var/lib/mmd --no-create-home --shell /usr/sbin/nologin mmd \
    && mkdir -p /var/lib/mmd /etc/mmd \
    && chown mmd:mmd /var/lib/mmd

COPY --from=builder /opt/mmd /opt/mmd
COPY deploy/docker/mmd.toml /etc/mmd/mmd.toml

USER 10001:10001
WORKDIR /var/lib/mmd
VOLUME ["/var/lib/mmd"]
EXPOSE 9464

# slim has no curl: probe /healthz with the standard library (port from MMD_OPS__METRICS_PORT).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MMD_OPS__METRICS_PORT', '9464'), timeout=4).status == 200 else 1)"]

ENTRYPOINT ["mmd"]
CMD ["run", "--config", "/etc/mmd/mmd.toml"]
