"""Real OTLP trace receivers on 127.0.0.1, for export tests: gRPC and HTTP/protobuf.

Built from opentelemetry-proto's generated messages and service, the way a
collector receives them, so the exporters under test run unmodified.
"""

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ReceivedSpan:
    """One span as it arrived, with the resource it arrived under."""

    def __init__(self, resource, span):
        self.resource = {kv.key: _value(kv.value) for kv in resource.attributes}
        self.name = span.name
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_span_id = span.parent_span_id.hex() or None
        self.attributes = {kv.key: _value(kv.value) for kv in span.attributes}

    @property
    def pid(self):
        return self.resource.get("process.pid")

    def __repr__(self):
        return "<%s pid=%s>" % (self.name, self.pid)


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class _Receiver:
    def __init__(self):
        self.requests = []
        self._lock = threading.Lock()

    def take(self, request):
        with self._lock:
            self.requests.append(request)

    def spans(self):
        with self._lock:
            requests = list(self.requests)
        return [ReceivedSpan(rs.resource, span) for request in requests for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]


class GrpcReceiver(_Receiver):
    """An OTLP/gRPC TraceService on 127.0.0.1, in a process of its own; ``endpoint`` is its URL.

    Its own process because grpcio's threads outlive a stopped server, and a
    test process with stray threads changes what later fork tests see.
    """

    def __init__(self):
        super().__init__()
        self._directory = tempfile.mkdtemp(prefix="otlp-grpc-")
        self._path = os.path.join(self._directory, "requests")
        self._process = subprocess.Popen([sys.executable, "-m", "tests.otlp_receivers", self._path],
                                         stdout=subprocess.PIPE, text=True, cwd=_ROOT)
        line = self._process.stdout.readline()
        if not line.startswith("port "):
            self._process.kill()
            raise RuntimeError("the gRPC receiver did not start: %r" % line)
        self.port = int(line.split()[1])
        self.endpoint = "http://127.0.0.1:%d" % self.port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._process.terminate()
        self._process.wait(30)
        shutil.rmtree(self._directory, ignore_errors=True)

    def spans(self):
        self.requests = list(_read_requests(self._path))
        return super().spans()


def _read_requests(path):
    """The requests the receiver process wrote: a 4-byte length, then the serialized request."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    offset = 0
    while offset + 4 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        yield trace_service_pb2.ExportTraceServiceRequest.FromString(data[offset + 4:offset + 4 + size])
        offset += 4 + size


def serve_grpc(path):
    """The receiver process: each request is on disk before its reply leaves."""
    import grpc

    lock = threading.Lock()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 (the generated service's name)
            data = request.SerializeToString()
            with lock, open(path, "ab") as f:
                f.write(len(data).to_bytes(4, "big") + data)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("port %d" % port, flush=True)
    server.wait_for_termination()


class HttpReceiver(_Receiver):
    """An OTLP/HTTP receiver (protobuf bodies on /v1/traces) on 127.0.0.1; ``endpoint`` is its base URL."""

    def __init__(self):
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.take(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    serve_grpc(sys.argv[1])
