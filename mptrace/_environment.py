"""An SDK TracerProvider built from the standard ``OTEL_*`` variables.

Used when ``install()`` gets no provider and the application configured none
(under ``opentelemetry-instrument`` one is configured already and is used as
it is). The SDK's own pieces do the work, so an application configured this
way behaves as the SDK documents:

* exporters are found by name among the ``opentelemetry_traces_exporter``
  entry points, the mechanism of the SDK's own auto-configuration, so any
  installed exporter works; ``otlp`` picks the gRPC or HTTP one by
  ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``, and the exporters read their
  endpoint, headers and timeouts themselves;
* the resource is ``Resource.create()`` (``OTEL_SERVICE_NAME``,
  ``OTEL_RESOURCE_ATTRIBUTES``), the sampler ``OTEL_TRACES_SAMPLER(_ARG)``,
  batching ``OTEL_BSP_*``.

What mptrace adds: each value is checked before use, and a bad one stops
``install()`` with a one-line ``ConfigurationError`` naming the variable and
the value (the SDK would log a warning and silently fall back to a default).
"""

import os
from urllib.parse import urlsplit

from mptrace import _grpcfork
from mptrace._errors import ConfigurationError

EXPORTER_GROUP = "opentelemetry_traces_exporter"
SAMPLER_GROUP = "opentelemetry_traces_sampler"
TREE_EXPORTER = "mptrace"  # mptrace's own: the process tree on stderr at exit
OTLP_ENTRY_POINTS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
DEFAULT_OTLP_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318/v1/traces"}
BUILT_IN_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
                     "parentbased_always_off", "parentbased_traceidratio")
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
OTLP_EXTRA_HINT = "pip install 'mptrace[otlp]'"


class Configured:
    """What ``build()`` made: the provider, and where its spans go (for the one message that says so)."""

    def __init__(self, provider, destinations, explicit):
        self.provider = provider
        self.destinations = destinations  # ["http://localhost:4317 (OTLP/gRPC)", ...]
        self.explicit = explicit  # whether the user chose an exporter or an endpoint
        self.exporters = []


def sdk_disabled():
    """``OTEL_SDK_DISABLED``: true turns tracing off, mptrace's included."""
    raw = os.environ.get("OTEL_SDK_DISABLED", "")
    value = raw.strip().lower()
    if value not in ("", "true", "false"):
        raise ConfigurationError("OTEL_SDK_DISABLED must be true or false, got %r" % raw)
    return value == "true"


def build():
    """A Configured provider from the environment; raises ConfigurationError on a bad value."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    explicit = export_configured()
    names = exporter_names()
    sampler = custom_sampler()
    check_resource_attributes()
    with _grpcfork.fork_handlers_off():  # the OTLP/gRPC exporter loads gRPC here: see _grpcfork
        made = [(name, _exporter(name, explicit)) for name in names]
    provider = TracerProvider(resource=Resource.create(), **({"sampler": sampler} if sampler else {}))
    configured = Configured(provider, [], explicit)
    for name, exporter in made:
        if exporter is not None:
            provider.add_span_processor(_processor_for(name, exporter))
            configured.exporters.append(exporter)
            configured.destinations.append(describe(name))
    return configured


# -- exporters -----------------------------------------------------------------


def export_configured():
    """Whether the user chose where spans go: an exporter, or an OTLP endpoint."""
    return any(os.environ.get(variable, "").strip() for variable in (
        "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def exporter_names():
    """``OTEL_TRACES_EXPORTER`` as a list of names (default: otlp, as the SDK's)."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "")
    names = [name.strip() for name in raw.split(",") if name.strip()] or ["otlp"]
    if "none" in names and len(names) > 1:
        raise ConfigurationError("OTEL_TRACES_EXPORTER cannot combine 'none' with other exporters, got %r" % raw)
    return [] if names == ["none"] else names


def otlp_protocol():
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = os.environ.get(variable, "")
        if raw.strip():
            protocol = raw.strip()
            if protocol not in OTLP_ENTRY_POINTS:
                raise ConfigurationError("%s must be grpc or http/protobuf, got %r%s" % (
                    variable, raw, " (the Python OTLP exporters do not send JSON)" if protocol == "http/json" else ""))
            return protocol
    return "grpc"


def otlp_endpoint(protocol):
    """The URL the OTLP exporter will send to, after checking the endpoint variables."""
    traces = _checked_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = _checked_url("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return DEFAULT_OTLP_ENDPOINTS[protocol]
    return base if protocol == "grpc" else base.rstrip("/") + "/v1/traces"


def _checked_url(variable):
    raw = os.environ.get(variable, "")
    if not raw.strip():
        return None
    url = raw.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("%s must be a URL such as http://localhost:4317, got %r" % (variable, raw))
    return url


def _exporter(name, explicit):
    """The exporter called ``name``; None when it is the default OTLP one and is not installed."""
    if name == TREE_EXPORTER:
        from mptrace.exporters import ProcessTreeExporter

        return ProcessTreeExporter()
    if name == "otlp":
        protocol = otlp_protocol()
        otlp_endpoint(protocol)
        factory = _entry_point(EXPORTER_GROUP, OTLP_ENTRY_POINTS[protocol])
        if factory is None:
            if os.environ.get("OTEL_TRACES_EXPORTER", "").strip():
                raise ConfigurationError("OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter, which is not installed: "
                                         "%s" % OTLP_EXTRA_HINT)
            return None  # nothing configured at all: install() says so once
        return factory()
    factory = _entry_point(EXPORTER_GROUP, name)
    if factory is None:
        known = sorted({"otlp", "none", TREE_EXPORTER} | set(_entry_point_names(EXPORTER_GROUP)))
        raise ConfigurationError("OTEL_TRACES_EXPORTER has an unknown exporter %r (installed: %s)"
                                 % (name, ", ".join(known)))
    return factory()


def _processor_for(name, exporter):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if name == TREE_EXPORTER:
        return SimpleSpanProcessor(exporter)  # it only keeps spans in memory until exit
    return BatchSpanProcessor(exporter)


def describe(name):
    """Where spans exported by ``name`` go, in words."""
    if name == "otlp":
        protocol = otlp_protocol()
        return "%s (OTLP/%s)" % (otlp_endpoint(protocol), "gRPC" if protocol == "grpc" else "HTTP")
    if name == "console":
        return "the console (standard output)"
    if name == TREE_EXPORTER:
        return "a process tree on standard error at exit"
    return "the %r exporter" % name


# -- sampler and resource ------------------------------------------------------


def custom_sampler():
    """A sampler from an entry point, or None to let the SDK read the built-in ones from the environment."""
    raw = os.environ.get("OTEL_TRACES_SAMPLER", "")
    name = raw.strip().lower()
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "")
    if not name or name in BUILT_IN_SAMPLERS:
        if name in RATIO_SAMPLERS and argument.strip():
            _check_ratio(argument)
        return None
    factory = _entry_point(SAMPLER_GROUP, raw.strip())
    if factory is None:
        choices = sorted(set(BUILT_IN_SAMPLERS) | set(_entry_point_names(SAMPLER_GROUP)))
        raise ConfigurationError("OTEL_TRACES_SAMPLER has an unknown sampler %r (choose from: %s)"
                                 % (raw, ", ".join(choices)))
    return factory(argument)


def _check_ratio(argument):
    try:
        ratio = float(argument)
    except ValueError:
        ratio = None
    if ratio is None or not 0.0 <= ratio <= 1.0:
        raise ConfigurationError("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got %r" % argument)


def check_resource_attributes():
    """``OTEL_RESOURCE_ATTRIBUTES`` is key=value,key=value (the SDK skips a bad pair with a warning)."""
    raw = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    for item in raw.split(","):
        if not item.strip():
            continue
        key, equals, _ = item.partition("=")
        if not equals or not key.strip():
            raise ConfigurationError("OTEL_RESOURCE_ATTRIBUTES must be key=value pairs separated by commas; "
                                     "%r is not one (in %r)" % (item, raw))


# -- entry points ----------------------------------------------------------------


def _entry_points(group):
    from importlib import metadata

    found = metadata.entry_points()
    if hasattr(found, "select"):
        return list(found.select(group=group))
    return list(found.get(group, ()))  # Python 3.9


def _entry_point(group, name):
    """The object an installed entry point ``name`` of ``group`` names, or None."""
    for entry_point in _entry_points(group):
        if entry_point.name == name:
            try:
                return entry_point.load()
            except ImportError:
                return None  # installed metadata, missing code: as good as absent
    return None


def _entry_point_names(group):
    return sorted({entry_point.name for entry_point in _entry_points(group)})
