# The stockanomaly application image: the Faust worker (default command) and the CLI
# (`stockanomaly ingest ...`, `stockanomaly notify ...`). Built by docker-compose.yml.
# BASE_IMAGE: any image with Python 3.11 and pip (default the official slim one; a machine with no
# registry can build its own, e.g. a Debian bookworm root filesystem imported with `docker import`).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every edit of the code.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt
# Then the project itself (README.md* so the build works whether or not the readme exists yet).
COPY README.md* ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /app-wheel .

FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STOCKANOMALY_METRICS_ADDR=0.0.0.0 STOCKANOMALY_METRICS_PORT=9100
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stockanomaly \
    && mkdir -p /var/lib/stockanomaly \
    && chown stockanomaly:stockanomaly /var/lib/stockanomaly
COPY --from=build /wheels /wheels
RUN pip install --no-index /wheels/*.whl && rm -rf /wheels
COPY --from=build /app-wheel /app-wheel
RUN pip install --no-deps /app-wheel/*.whl && rm -rf /app-wheel
USER stockanomaly
# The detectors' numba kernels, compiled once here into a cache the image carries, so a container
# starts in about a second instead of compiling for ~20 s. numba keys its cache by CPU model and
# features: compiled for a generic x86-64 CPU, the cache serves whatever machine runs the image
# (the kernels measured as fast as compiled for the host's own CPU: docs/benchmarks.md).
ENV NUMBA_CACHE_DIR=/home/stockanomaly/.cache/numba NUMBA_CPU_NAME=generic
RUN python -c "from entrypoints.container import build_container; build_container().engine().warm_up(); \
    from adapters.kafka.codec import warm_up; warm_up()"
# Faust keeps its RocksDB tables under the working directory ({app id}-data).
WORKDIR /var/lib/stockanomaly
# Metrics only: Faust's web server (6066) binds 127.0.0.1, for the container's own use.
EXPOSE 9100
CMD ["faust", "-A", "entrypoints.worker", "worker", "-l", "info"]
