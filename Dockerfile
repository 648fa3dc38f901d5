# The stockanomaly application image: the Faust worker (default command) and the CLI
# (`stockanomaly ingest ...`). Built by docker-compose.yml.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md* so the build works whether or not the readme exists yet.
COPY pyproject.toml README.md* ./
COPY src ./src
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STOCKANOMALY_METRICS_PORT=9100
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stockanomaly \
    && mkdir -p /var/lib/stockanomaly \
    && chown stockanomaly:stockanomaly /var/lib/stockanomaly
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
USER stockanomaly
# The detectors' numba kernels, compiled once here into a cache the image carries, so a container
# starts in about a second instead of compiling for ~20 s.
ENV NUMBA_CACHE_DIR=/home/stockanomaly/.cache/numba
RUN python -c "from entrypoints.container import build_container; build_container().engine().warm_up()"
# Faust keeps its RocksDB tables under the working directory ({app id}-data).
WORKDIR /var/lib/stockanomaly
EXPOSE 9100 6066
CMD ["faust", "-A", "entrypoints.worker", "worker", "-l", "info"]
