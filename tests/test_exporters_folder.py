"""The exporters/ folder stays valid: its YAML parses, the compose files and the
collector configuration agree with each other, and every port its READMEs
quote is one the compose files really publish (and the other way round).

Nothing here starts a container; these tests only read files.
"""
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPORTERS = ROOT / "exporters"
JAEGER_COMPOSE = EXPORTERS / "jaeger" / "compose.yaml"
COLLECTOR_COMPOSE = EXPORTERS / "otel-collector" / "compose.yaml"
COLLECTOR_CONFIG = EXPORTERS / "otel-collector" / "config.yaml"
COMPOSE_FILES = [JAEGER_COMPOSE, COLLECTOR_COMPOSE]

# Jaeger v2's default OTLP ports (its built-in all-in-one configuration).
JAEGER_OTLP_GRPC, JAEGER_OTLP_HTTP, JAEGER_UI = 4317, 4318, 16686

# Jaeger v2 from any registry it is published to, with a 2.x tag.
JAEGER_V2_IMAGE = re.compile(
    r"^(?:(?:docker\.io|quay\.io|cr\.jaegertracing\.io)/)?jaegertracing/jaeger"
    r":(?P<tag>2(?:\.\d+){0,2})(?:@sha256:[0-9a-f]{64})?$")
COLLECTOR_IMAGE = re.compile(
    r"^(?:docker\.io/|ghcr\.io/open-telemetry/opentelemetry-collector-releases/)?"
    r"(?:otel/)?opentelemetry-collector-contrib:(?P<version>\d+\.\d+\.\d+)(?:@sha256:[0-9a-f]{64})?$")

# Environment variables only Jaeger v1 read; v2 ignores them silently.
JAEGER_V1_ONLY_ENV = ("COLLECTOR_OTLP_ENABLED", "COLLECTOR_ZIPKIN_HOST_PORT", "SPAN_STORAGE_TYPE",
                      "QUERY_BASE_PATH", "MEMORY_MAX_TRACES")

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def yaml_files():
    return sorted(p for p in EXPORTERS.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def readmes():
    return sorted(EXPORTERS.rglob("README.md"))


def rel(path):
    return path.relative_to(ROOT).as_posix()


# -- compose helpers ---------------------------------------------------------

def port_entries(service):
    """Each `ports:` entry of a compose service as (host_ip, published, target)."""
    entries = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):  # long syntax
            host_ip = str(entry.get("host_ip", ""))
            published = entry.get("published")
            target = entry["target"]
        else:  # short syntax: [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]
            text = str(entry).split("/", 1)[0]
            parts = text.rsplit(":", 2)
            host_ip = parts[0].strip("[]") if len(parts) == 3 else ""
            published = parts[-2] if len(parts) >= 2 else None
            target = parts[-1]
        entries.append((host_ip, None if published in (None, "") else int(published), int(target)))
    return entries


def published_ports(compose):
    """{host port: (service name, host_ip, container port)} for every published port."""
    out = {}
    for name, service in compose["services"].items():
        for host_ip, published, target in port_entries(service):
            assert published is not None, "%s publishes container port %d on a random host port" % (name, target)
            assert published not in out, "host port %d is published twice (%s and %s)" % (
                published, out[published][0], name)
            out[published] = (name, host_ip, target)
    return out


def container_ports(service):
    """Ports a service is known to listen on inside the compose network."""
    ports = {target for _, _, target in port_entries(service)}
    ports.update(int(str(p).split("/", 1)[0]) for p in service.get("expose") or [])
    return ports


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def host_port(endpoint):
    """'jaeger:4317', 'http://jaeger:4317' or '0.0.0.0:4317' -> ('jaeger', 4317)."""
    match = re.match(r"^(?:[a-z][a-z0-9+.-]*://)?(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/?$", str(endpoint))
    assert match, "not a host:port endpoint: %r" % (endpoint,)
    return match.group("host").strip("[]"), int(match.group("port"))


def component_type(name):
    """Collector component IDs are type[/name]."""
    return name.split("/", 1)[0]


def service_with_image(compose, pattern):
    found = [(name, s) for name, s in compose["services"].items() if pattern.match(str(s.get("image", "")))]
    assert len(found) == 1, "expected one service with an image matching %s, found %s" % (
        pattern.pattern, [n for n, _ in found])
    return found[0]


# -- (a) every YAML file parses ----------------------------------------------

def test_expected_files_exist():
    for path in [JAEGER_COMPOSE, COLLECTOR_COMPOSE, COLLECTOR_CONFIG,
                 EXPORTERS / "README.md", EXPORTERS / "jaeger" / "README.md",
                 EXPORTERS / "otel-collector" / "README.md"]:
        assert path.is_file(), "missing %s" % rel(path)
    assert not (EXPORTERS / "__init__.py").exists(), "exporters/ holds configuration, not a Python package"


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_parses(path):
    document = load(path)
    assert isinstance(document, dict) and document, "%s is not a YAML mapping" % rel(path)


# -- (b) the Jaeger-only compose file ----------------------------------------

@pytest.mark.parametrize("path", COMPOSE_FILES, ids=rel)
def test_every_published_port_is_bound_to_loopback(path):
    ports = published_ports(load(path))
    assert ports, "%s publishes nothing" % rel(path)
    for host, (service, host_ip, target) in ports.items():
        assert host_ip == "127.0.0.1", "%s: %s publishes %d on %r, not 127.0.0.1" % (
            rel(path), service, host, host_ip or "every interface")
        assert host == target, "%s: %s maps host port %d to container port %d; the docs assume the same number" % (
            rel(path), service, host, target)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=rel)
def test_jaeger_is_v2_without_v1_settings(path):
    compose = load(path)
    for name, service in compose["services"].items():
        image = str(service.get("image", ""))
        assert "all-in-one" not in image, "%s: %s uses Jaeger v1's end-of-life image %s" % (rel(path), name, image)
    name, service = service_with_image(compose, JAEGER_V2_IMAGE)
    env = environment(service)
    stale = [key for key in env if key in JAEGER_V1_ONLY_ENV]
    assert not stale, "%s: %s sets Jaeger v1 variables that v2 ignores: %s" % (rel(path), name, stale)


def test_jaeger_compose_publishes_otlp_and_ui():
    compose = load(JAEGER_COMPOSE)
    name, _ = service_with_image(compose, JAEGER_V2_IMAGE)
    ports = published_ports(compose)
    for port in (JAEGER_OTLP_GRPC, JAEGER_OTLP_HTTP, JAEGER_UI):
        assert port in ports, "jaeger/compose.yaml does not publish %d" % port
        assert ports[port][0] == name and ports[port][2] == port


def test_jaeger_image_tag_is_pinned():
    name, service = service_with_image(load(JAEGER_COMPOSE), JAEGER_V2_IMAGE)
    tag = JAEGER_V2_IMAGE.match(service["image"]).group("tag")
    assert tag != "latest" and tag.split(".")[0] == "2"
    # Both setups run the same Jaeger, so what one README says holds for the other.
    _, other = service_with_image(load(COLLECTOR_COMPOSE), JAEGER_V2_IMAGE)
    assert other["image"] == service["image"]


# -- (c) the collector configuration ----------------------------------------

def collector_service():
    return service_with_image(load(COLLECTOR_COMPOSE), COLLECTOR_IMAGE)


def test_otlp_receiver_listens_on_the_published_ports():
    config = load(COLLECTOR_CONFIG)
    protocols = config["receivers"]["otlp"]["protocols"]
    grpc_host, grpc_port = host_port(protocols["grpc"]["endpoint"])
    http_host, http_port = host_port(protocols["http"]["endpoint"])
    assert (grpc_port, http_port) == (4317, 4318)
    # The collector defaults to localhost, which a published port cannot reach.
    assert grpc_host == http_host == "0.0.0.0"
    name, _ = collector_service()
    published = {target for _, (service, _, target) in published_ports(load(COLLECTOR_COMPOSE)).items()
                 if service == name}
    assert {grpc_port, http_port} <= published, "the collector service does not publish its OTLP ports"


def test_traces_pipeline_refers_to_defined_components():
    config = load(COLLECTOR_CONFIG)
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        used = pipeline.get(kind) or []
        assert used, "the traces pipeline has no %s" % kind
        defined = set(config.get(kind) or {})
        undefined = [c for c in used if c not in defined]
        assert not undefined, "the traces pipeline uses %s %s that config.yaml does not define" % (kind, undefined)
    assert "otlp" in pipeline["receivers"] and "batch" in pipeline["processors"]


def otlp_grpc_exporters(config):
    return {k: v for k, v in config["exporters"].items() if component_type(k) in ("otlp", "otlp_grpc")}


def test_otlp_exporter_targets_jaeger_on_4317():
    config = load(COLLECTOR_CONFIG)
    exporters = otlp_grpc_exporters(config)
    assert len(exporters) == 1, "expected one OTLP gRPC exporter, found %s" % sorted(exporters)
    (name, exporter), = exporters.items()
    assert name in config["service"]["pipelines"]["traces"]["exporters"]
    assert host_port(exporter["endpoint"]) == ("jaeger", JAEGER_OTLP_GRPC)
    assert (exporter.get("tls") or {}).get("insecure") is True, "Jaeger's OTLP port speaks plain gRPC"


def test_exporter_names_exist_in_the_pinned_collector():
    # `otlp_grpc` (and `otlp_http`) exist from collector 0.144.0 on; older
    # images would refuse to start with them.
    config = load(COLLECTOR_CONFIG)
    _, service = collector_service()
    version = tuple(int(n) for n in COLLECTOR_IMAGE.match(service["image"]).group("version").split("."))
    types = {component_type(k) for k in config["exporters"]}
    if types & {"otlp_grpc", "otlp_http"}:
        assert version >= (0, 144, 0), "otlp_grpc/otlp_http need collector 0.144.0 or later, image is %s" % (
            service["image"],)
    assert "logging" not in types, "the logging exporter was replaced by debug"


def test_file_exporter_writes_into_the_mounted_data_directory():
    config = load(COLLECTOR_CONFIG)
    files = {k: v for k, v in config["exporters"].items() if component_type(k) == "file"}
    assert len(files) == 1, "expected one file exporter, found %s" % sorted(files)
    (name, exporter), = files.items()
    assert name in config["service"]["pipelines"]["traces"]["exporters"]
    path = pathlib.PurePosixPath(exporter["path"])
    assert path.suffix == ".jsonl" and exporter.get("format", "json") == "json"

    _, service = collector_service()
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source"), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        mounts[pathlib.PurePosixPath(target)] = source
    directory = path.parent
    assert directory in mounts, "the file exporter writes to %s, which is not a mounted volume" % directory
    source = mounts[directory]
    assert source.startswith("./"), "%s should be a bind mount next to compose.yaml" % directory
    assert (COLLECTOR_COMPOSE.parent / source).is_dir(), "%s does not exist" % source

    # The configuration itself is mounted where the image reads it (or where
    # the command points).
    config_targets = [t for t, s in mounts.items() if s == "./" + COLLECTOR_CONFIG.name]
    assert config_targets, "config.yaml is not mounted into the collector"
    command = " ".join(service.get("command") or []) if isinstance(service.get("command"), list) \
        else str(service.get("command") or "")
    assert any(str(t) == "/etc/otelcol-contrib/config.yaml" or str(t) in command for t in config_targets)


# -- (e) names in the collector config are compose services -------------------

def test_collector_endpoints_name_compose_services():
    config = load(COLLECTOR_CONFIG)
    compose = load(COLLECTOR_COMPOSE)
    services = compose["services"]
    checked = 0
    for name, exporter in config["exporters"].items():
        if not isinstance(exporter, dict) or "endpoint" not in exporter:
            continue
        host, port = host_port(exporter["endpoint"])
        assert host in services, "exporter %s sends to %r, which is no service in %s" % (
            name, host, rel(COLLECTOR_COMPOSE))
        assert port in container_ports(services[host]), (
            "exporter %s sends to %s:%d, but the compose file declares no such port for %s" % (name, host, port, host))
        checked += 1
    assert checked, "no exporter endpoint was checked"
    _, collector = collector_service()
    for dependency in collector.get("depends_on") or []:
        assert dependency in services
    assert "jaeger" in (collector.get("depends_on") or [])


def test_collector_compose_keeps_jaeger_otlp_private():
    # The host's 4317 belongs to the collector; Jaeger's OTLP stays on the
    # compose network.
    compose = load(COLLECTOR_COMPOSE)
    jaeger_name, _ = service_with_image(compose, JAEGER_V2_IMAGE)
    ports = published_ports(compose)
    assert ports[JAEGER_UI][0] == jaeger_name
    assert all(service != jaeger_name for service, _, target in ports.values()
               if target in (JAEGER_OTLP_GRPC, JAEGER_OTLP_HTTP))


# -- (d) READMEs and compose files agree -------------------------------------

# host:port, http://host:port/..., or a bare :port.
ADDRESS = re.compile(r"(?<![\w.-])(?P<host>[A-Za-z0-9][\w.-]*)?:(?P<port>\d{2,5})(?!\d)(?!\.\d)")
# "port 4317", "ports 4317"
PROSE_PORT = re.compile(r"\bports?\s+(?P<port>\d{2,5})\b", re.IGNORECASE)


def readme_addresses(text):
    found = [(m.group("host") or "", int(m.group("port"))) for m in ADDRESS.finditer(text)]
    found += [("", int(m.group("port"))) for m in PROSE_PORT.finditer(text)]
    return found


def composes_for(readme):
    """The compose files a README speaks for: its own folder's, or all of them."""
    own = readme.parent / "compose.yaml"
    return [own] if own.is_file() else COMPOSE_FILES


def test_address_regex_finds_what_the_docs_write():
    text = ("Send to http://127.0.0.1:4317 or `:4318`; the collector forwards to jaeger:4317.\n"
            "curl http://127.0.0.1:16686/api/v3/traces/abc. Image jaegertracing/jaeger:2.15.0, "
            "then ports 9999 and (2.x) 100 MB.")
    assert readme_addresses(text) == [("127.0.0.1", 4317), ("", 4318), ("jaeger", 4317),
                                      ("127.0.0.1", 16686), ("", 9999)]


@pytest.mark.parametrize("readme", readmes(), ids=rel)
def test_readme_ports_match_the_compose_files(readme):
    text = readme.read_text(encoding="utf-8")
    composes = [load(p) for p in composes_for(readme)]
    published = {}
    services = {}
    for compose in composes:
        published.update(published_ports(compose))
        services.update(compose["services"])

    mentioned_host_ports = set()
    for host, port in readme_addresses(text):
        if host in LOOPBACK_HOSTS or host == "":
            assert port in published, "%s mentions port %d, which %s does not publish" % (
                rel(readme), port, " / ".join(rel(p) for p in composes_for(readme)))
            if host:
                mentioned_host_ports.add(port)
        elif host == "0.0.0.0":
            assert port in {t for _, _, t in published.values()}, "%s: 0.0.0.0:%d is not a published container port" % (
                rel(readme), port)
        else:
            assert host in services, "%s mentions %s:%d, but %r is no compose service" % (rel(readme), host, port, host)
            assert port in container_ports(services[host]), "%s mentions %s:%d, but %s declares no port %d" % (
                rel(readme), host, port, host, port)
    # ... and the other way round: the docs tell of every published port.
    missing = sorted(set(published) - mentioned_host_ports)
    assert not missing, "%s never mentions 127.0.0.1:<port> for published ports %s" % (rel(readme), missing)


@pytest.mark.parametrize("readme", readmes(), ids=rel)
def test_readme_commands_use_existing_compose_files_and_matching_protocols(readme):
    text = readme.read_text(encoding="utf-8")
    for path in re.findall(r"docker compose -f (\S+)", text):
        assert (ROOT / path).is_file(), "%s runs docker compose on %s, which does not exist" % (rel(readme), path)

    # OTLP gRPC and OTLP HTTP on the ports the collector config (and Jaeger's
    # defaults, the same numbers) give them.
    protocols = load(COLLECTOR_CONFIG)["receivers"]["otlp"]["protocols"]
    grpc_port = host_port(protocols["grpc"]["endpoint"])[1]
    http_port = host_port(protocols["http"]["endpoint"])[1]
    assert (grpc_port, http_port) == (JAEGER_OTLP_GRPC, JAEGER_OTLP_HTTP)
    for line in text.splitlines():
        match = re.search(r"OTEL_EXPORTER_OTLP_ENDPOINT=(\S+)", line)
        if not match:
            continue
        port = host_port(match.group(1))[1]
        wanted = http_port if "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in line else grpc_port
        assert port == wanted, "%s: %r sends to port %d, expected %d for its protocol" % (
            rel(readme), line.strip(), port, wanted)
