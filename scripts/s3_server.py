"""An S3-protocol server for the Kafka tests: moto's, serving one request at a time.

The tests' tansu brokers keep their logs in it (scripts/services.sh starts it). tansu
commits each append with a conditional PUT (If-Match on the partition's watermark
object); S3 applies those atomically, but moto's threaded server checks the condition
and stores the object in two steps that two threads can interleave. One lock around
the app makes each request whole, as on S3.

Usage: python s3_server.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def one_at_a_time(environ, start_response):
    with lock:
        return list(app(environ, start_response))


run_simple(
    sys.argv[1],
    int(sys.argv[2]),
    one_at_a_time,
    threaded=True,
    request_handler=MotoRequestHandler,
)
