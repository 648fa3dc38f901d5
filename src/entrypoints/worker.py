"""The streaming worker: `faust -A entrypoints.worker worker -l info`."""

from __future__ import annotations

import os
import sys

from adapters.kafka.codec import _walk_tables as decoder_kernel
from adapters.kafka.codec import warm_up as warm_up_decoder
from domain.compiled import compiled_in_this_process, kernels_cached
from domain.errors import ConfigError
from entrypoints.container import build_container
from entrypoints.logging_setup import configure_logging, throttle_kafka_client
from entrypoints.topics import (RESTARTED_AFTER_COMPILING, before_start, describe_suppressions, faust_web_address,
                                require_directory, require_port, restart_after_compiling, say_compiled,
                                serve_metrics, warm_up_kernels)

try:
    container = build_container(metrics="prometheus")
    # What does not parse stops the start here, in one line: the suppressions file, the thresholds
    # file and the detector names (the engine is built from them).
    rules_file = container.suppressions()
    engine = container.engine()
except ConfigError as exc:
    sys.exit(f"stockanomaly worker: {exc}")
configure_logging(container.settings().log_level)
describe_suppressions(rules_file)
# Compiled kernels loaded (or, on a machine's very first start, compiled) before the consumer starts,
# so the first batches do not wait on them and no consumer heartbeat waits on a compiler.
seconds = warm_up_kernels([engine.warm_up, warm_up_decoder], os.environ,
                          cached=kernels_cached() and kernels_cached(decoder_kernel))
# A start that compiled them (no cache yet for these sources on this CPU) keeps LLVM's memory, ~200
# MiB, for the process's life: start again, now loading them from the cache just written.
compiled = compiled_in_this_process()
restart = restart_after_compiling(compiled, sys.argv, sys.orig_argv, sys.executable, os.environ)
say_compiled(compiled, seconds, restarting=restart is not None)  # also when it runs on (a cache it cannot write)
if restart is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[RESTARTED_AFTER_COMPILING] = "1"
    os.execv(restart[0], restart)
try:
    app = container.worker_app()  # holds the data directory: another worker's stops here
except ConfigError as exc:
    sys.exit(f"stockanomaly worker: {exc}")
throttle_kafka_client()  # unthrottled, a broker away for a minute makes 369 client error lines


def prepare() -> None:
    # When the worker starts, not at import: `faust -A entrypoints.worker <other command>` and tests
    # importing this module must not bind STOCKANOMALY_METRICS_PORT (default 9100).
    require_directory(container.settings().data_dir, "STOCKANOMALY_DATA_DIR")
    web = faust_web_address(sys.argv, "127.0.0.1", container.settings().worker_web_port)
    if web is not None:
        require_port(*web, "STOCKANOMALY_WORKER_WEB_PORT (or --web-port)")
    serve_metrics(container.metrics_server(), "STOCKANOMALY_METRICS_ADDR / STOCKANOMALY_METRICS_PORT")


before_start(app, container.streaming(), "worker", prepare)
