"""Envoy's bootstrap for one mesh: the public front door of EmoStream.

One listener on 127.0.0.1 serves three kinds of clients on the same port:

- native gRPC over HTTP/2 (cleartext, prior knowledge);
- gRPC-Web from browsers, with CORS only for the layout's origins;
- REST/JSON, transcoded to EmojiIngest calls from the HTTP rules in the proto.

Routes send EmojiIngest (and server reflection) to the ingest processes and
SwarmFeed to the subscriber nodes; every other path is answered by Envoy with
a 404 and never reaches a backend.

Errors Envoy answers itself (a REST body the transcoder cannot read, an
unknown query parameter, the 404 above, no healthy backend) come back to REST
callers as the same JSON status the transcoder makes of the backends' own
errors: ``{"code": <gRPC code>, "message": "...", "details": []}`` with
content-type application/json. gRPC and gRPC-Web callers keep getting such
errors as grpc-status and grpc-message.

Long-lived streams and limits, in one place:

- SwarmFeed routes have no route timeout and no idle timeout: a viewer's
  stream lives as long as both ends do. A peer that closes or resets its
  connection (a killed process) frees its streams at once. A peer that
  vanishes without a word is found by HTTP/2 PING instead: Envoy pings each
  downstream and upstream connection every ``KEEPALIVE_INTERVAL_S`` (with
  jitter) and closes it when no answer comes within ``KEEPALIVE_TIMEOUT_S``,
  so a silent peer is meant to be dropped after about interval plus timeout
  (30 s, plus the jitter). That is not a hard bound: a peer that is stalled
  but keeps its TCP connection open (a frozen process, whose kernel still
  acknowledges while unread data fills the buffers) can hold its streams
  longer. Measured: a frozen viewer holding 500 streams was freed after
  about 87 s, a killed one after 0.3 s.
- Unary ingest calls get ``UNARY_TIMEOUT_S``.
- One downstream connection may carry ``DOWNSTREAM_MAX_STREAMS`` streams
  (HTTP/2's default of 1024 would leave extra streams waiting silently).
- Each subscriber host takes at most ``SUBSCRIBER_STREAMS_PER_CONNECTION``
  streams per upstream connection; Envoy opens another connection to the
  host when one is full, so tens of thousands of viewers spread over several
  TCP connections per node instead of one.
- Circuit breakers allow ``CIRCUIT_LIMIT`` connections, pending and active
  requests per cluster (the default 1024 fails extra streams with overflow).
- Active gRPC health checks every ``HEALTH_INTERVAL_S`` take a killed or
  draining node out of the rotation within about two intervals.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from deploy.layout import ROOT, MeshLayout

DESCRIPTOR_SET = ROOT / "deploy" / "envoy" / "emostream.pb"

INGEST_SERVICE = "emostream.v1.EmojiIngest"
FEED_SERVICE = "emostream.v1.SwarmFeed"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"

INGEST_CLUSTER = "ingest"
NOOP_INGEST_CLUSTER = "ingest_noop"
SUBSCRIBER_CLUSTER = "subscribers"

# Requests carrying this header with the value "noop" go to the no-op ingest.
BACKEND_HEADER = "x-emostream-backend"

UNARY_TIMEOUT_S = 10
REFLECTION_TIMEOUT_S = 60
KEEPALIVE_INTERVAL_S = 20
KEEPALIVE_TIMEOUT_S = 10
HEALTH_INTERVAL_S = 1
DOWNSTREAM_MAX_STREAMS = 100_000
DOWNSTREAM_MAX_CONNECTIONS = 50_000
SUBSCRIBER_STREAMS_PER_CONNECTION = 5_000
INGEST_STREAMS_PER_CONNECTION = 10_000
CIRCUIT_LIMIT = 200_000

_TYPES = "type.googleapis.com/envoy"

# The service each cluster's gRPC health check asks about.
_HEALTH_SERVICE = {
    INGEST_CLUSTER: INGEST_SERVICE,
    NOOP_INGEST_CLUSTER: INGEST_SERVICE,
    SUBSCRIBER_CLUSTER: FEED_SERVICE,
}

# The message of Envoy's own 404; REST callers get it inside a JSON status.
NOT_FOUND_MESSAGE = "no such route; see emostream.v1 for the API"

# The gRPC code a REST caller reads for each HTTP status Envoy answers with
# itself, the reverse of how the transcoder turns backend gRPC codes into
# HTTP statuses; any other status >= 400 reads UNKNOWN.
LOCAL_REPLY_CODES = {
    400: 3,  # INVALID_ARGUMENT
    404: 5,  # NOT_FOUND
    413: 8,  # RESOURCE_EXHAUSTED
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
UNKNOWN_CODE = 2


@dataclass(frozen=True)
class Network:
    """Where Envoy listens and finds its backends when they run on other hosts.

    Each backend is a DNS name that resolves to every replica (a Compose
    service or a headless Kubernetes Service); Envoy re-resolves it and
    balances over all addresses. Without a Network, everything is on
    127.0.0.1 at the layout's ports, as ``deploy/mesh.py`` runs it.
    """

    ingest: tuple[str, ...]
    subscribers: tuple[str, ...]
    # The no-op EmojiIngest for benchmarks, reached with BACKEND_HEADER.
    noop_ingest: str | None = None
    listen_address: str = "0.0.0.0"
    descriptor_set: str = "/app/deploy/envoy/emostream.pb"
    access_log: str = "/dev/stdout"


def local_network(layout: MeshLayout) -> Network:
    """Every process on this machine, on 127.0.0.1 at the layout's ports."""
    return Network(
        ingest=tuple(f"127.0.0.1:{port}" for port in layout.ingest_ports),
        subscribers=tuple(f"127.0.0.1:{port}" for port in layout.subscriber_ports),
        noop_ingest=(
            f"127.0.0.1:{layout.noop_ingest_port}" if layout.noop_ingest else None
        ),
        listen_address="127.0.0.1",
        descriptor_set=str(DESCRIPTOR_SET),
        access_log=str(layout.logs_dir / "envoy-access.log"),
    )


# The layout and names the multi-host files (deploy/compose.yaml, deploy/k8s)
# use: every replica of a role listens on the same port on its own host.
MULTI_HOST_LAYOUT_ARGS: dict[str, Any] = {
    "port_base": 8080,
    "clusters": 2,
    "subscribers_per_cluster": 2,
    "noop_ingest": False,
}
MULTI_HOST_CONFIG = ROOT / "deploy" / "envoy" / "envoy-multihost.yaml"


def multi_host_network(layout: MeshLayout) -> Network:
    return Network(
        ingest=(f"ingest:{layout.ingest_port(0)}",),
        subscribers=tuple(
            f"subscribers-{c}:{layout.subscriber_port(0, 0)}"
            for c in range(layout.clusters)
        ),
    )


def clusters(layout: MeshLayout) -> list[str]:
    """The clusters that must have a healthy host before Envoy is ready."""
    names = [INGEST_CLUSTER]
    if layout.noop_ingest:
        names.append(NOOP_INGEST_CLUSTER)
    if layout.fanout:
        names.append(SUBSCRIBER_CLUSTER)
    return names


def render(layout: MeshLayout, network: Network | None = None) -> str:
    """Envoy's v3 bootstrap for ``layout`` (JSON, which Envoy reads as YAML)."""
    return json.dumps(bootstrap(layout, network), indent=2) + "\n"


def bootstrap(layout: MeshLayout, network: Network | None = None) -> dict[str, Any]:
    """The bootstrap as a dict, for tests that inspect single settings."""
    net = network or local_network(layout)
    cluster_list = [_cluster(INGEST_CLUSTER, net.ingest)]
    if net.noop_ingest:
        cluster_list.append(_cluster(NOOP_INGEST_CLUSTER, (net.noop_ingest,)))
    if layout.fanout:
        cluster_list.append(_cluster(SUBSCRIBER_CLUSTER, net.subscribers))
    return {
        "node": {"id": "emostream-envoy", "cluster": "emostream"},
        "admin": {"address": _address(layout.envoy_admin_port)},
        "static_resources": {
            "listeners": [_public_listener(layout, net)],
            "clusters": cluster_list,
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": f"{_TYPES}.extensions.resource_monitors"
                        ".downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": (
                            DOWNSTREAM_MAX_CONNECTIONS
                        ),
                    },
                }
            ]
        },
    }


# The listener ------------------------------------------------------------------


def _public_listener(layout: MeshLayout, net: Network) -> dict[str, Any]:
    manager = {
        "@type": f"{_TYPES}.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "public",
        "codec_type": "AUTO",
        # Server streams are governed per route (see _routes); this bound is
        # for everything else that stops sending.
        "stream_idle_timeout": "300s",
        "http2_protocol_options": {
            "max_concurrent_streams": DOWNSTREAM_MAX_STREAMS,
            "initial_stream_window_size": 1 << 20,
            "initial_connection_window_size": 16 << 20,
            "connection_keepalive": _keepalive(),
        },
        "access_log": [_error_access_log(net.access_log)],
        "local_reply_config": _local_reply_config(),
        "route_config": {
            "name": "public",
            "virtual_hosts": [
                {
                    "name": "emostream",
                    "domains": ["*"],
                    "routes": _routes(layout, noop_ingest=net.noop_ingest is not None),
                    "typed_per_filter_config": {
                        "envoy.filters.http.cors": _cors_policy(layout)
                    },
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.cors",
                "typed_config": {
                    "@type": f"{_TYPES}.extensions.filters.http.cors.v3.Cors"
                },
            },
            {
                "name": "envoy.filters.http.grpc_web",
                "typed_config": {
                    "@type": f"{_TYPES}.extensions.filters.http.grpc_web.v3.GrpcWeb"
                },
            },
            {
                "name": "envoy.filters.http.grpc_json_transcoder",
                "typed_config": _transcoder(net.descriptor_set),
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": f"{_TYPES}.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    return {
        "name": "public",
        "address": _address(layout.envoy_port, net.listen_address),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _transcoder(descriptor_set: str) -> dict[str, Any]:
    return {
        "@type": f"{_TYPES}.extensions.filters.http.grpc_json_transcoder"
        ".v3.GrpcJsonTranscoder",
        "proto_descriptor": descriptor_set,
        "services": [INGEST_SERVICE],
        # JSON out uses match_id, not matchId; both spellings are read.
        "print_options": {
            "preserve_proto_field_names": True,
            "always_print_primitive_fields": True,
        },
        # Errors come back as a JSON google.rpc.Status with the HTTP code
        # that matches the gRPC code (INVALID_ARGUMENT -> 400).
        "convert_grpc_status": True,
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
        },
    }


def _local_reply_config() -> dict[str, Any]:
    """Envoy's own error replies to REST callers, as a JSON google.rpc.Status.

    One mapper per HTTP status names the gRPC code; the original text becomes
    the message. Only REST_CALLER requests match: a gRPC or gRPC-Web call
    matches no mapper, so Envoy still sends its error as grpc-status and
    grpc-message. Replies below 400 are left alone.
    """
    mappers = [
        _json_error_mapper(code, {"status_code_filter": _status_is("EQ", status)})
        for status, code in LOCAL_REPLY_CODES.items()
    ]
    mappers.append(
        _json_error_mapper(UNKNOWN_CODE, {"status_code_filter": _status_is("GE", 400)})
    )
    return {"mappers": mappers}


# A REST caller: its content-type is not gRPC's (a missing one counts), or
# the transcoder has already rewritten it into a gRPC request (it does so
# before reading the body, keeping the REST path in x-envoy-original-path).
# The gRPC-Web filter also rewrites content-type to gRPC's, so gRPC-Web
# callers fall on the gRPC side.
REST_CALLER = {
    "or_filter": {
        "filters": [
            {
                "header_filter": {
                    "header": {
                        "name": "content-type",
                        "string_match": {"prefix": "application/grpc"},
                        "invert_match": True,
                        "treat_missing_header_as_empty": True,
                    }
                }
            },
            {
                "header_filter": {
                    "header": {"name": "x-envoy-original-path", "present_match": True}
                }
            },
        ]
    }
}


def _json_error_mapper(code: int, status_filter: dict[str, Any]) -> dict[str, Any]:
    return {
        "filter": {"and_filter": {"filters": [status_filter, REST_CALLER]}},
        "body_format_override": {
            "json_format": {
                "code": code,
                "message": "%LOCAL_REPLY_BODY%",
                "details": [],
            },
            "content_type": "application/json",
        },
    }


def _status_is(op: str, status: int) -> dict[str, Any]:
    return {
        "comparison": {
            "op": op,
            "value": {"default_value": status, "runtime_key": ""},
        }
    }


def _cors_policy(layout: MeshLayout) -> dict[str, Any]:
    return {
        "@type": f"{_TYPES}.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": o} for o in layout.cors_origins],
        "allow_methods": "GET, POST, OPTIONS",
        "allow_headers": (
            "content-type, x-grpc-web, x-user-agent, grpc-timeout, authorization"
        ),
        "expose_headers": "grpc-status, grpc-message, grpc-status-details-bin",
        "max_age": "600",
        # A preflight from any other origin is answered here, not forwarded.
        "forward_not_matching_preflights": False,
    }


def _error_access_log(path: str) -> dict[str, Any]:
    """Logs only requests that failed or that Envoy itself cut short."""
    return {
        "name": "envoy.access_loggers.file",
        "filter": {
            "or_filter": {
                "filters": [
                    {"status_code_filter": _status_is("GE", 400)},
                    {"response_flag_filter": {}},
                ]
            }
        },
        "typed_config": {
            "@type": f"{_TYPES}.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {
                "json_format": {
                    "start": "%START_TIME%",
                    "method": "%REQ(:METHOD)%",
                    "path": "%REQ(:PATH)%",
                    "status": "%RESPONSE_CODE%",
                    "grpc_status": "%GRPC_STATUS%",
                    "flags": "%RESPONSE_FLAGS%",
                    "details": "%RESPONSE_CODE_DETAILS%",
                    "upstream": "%UPSTREAM_HOST%",
                    "duration_ms": "%DURATION%",
                }
            },
        },
    }


# Routes ------------------------------------------------------------------------


def _routes(layout: MeshLayout, *, noop_ingest: bool) -> list[dict[str, Any]]:
    ingest_matches = [{"prefix": f"/{INGEST_SERVICE}/"}, *_rest_matches()]
    routes: list[dict[str, Any]] = []
    if noop_ingest:
        noop_header = {"name": BACKEND_HEADER, "string_match": {"exact": "noop"}}
        routes += [
            {
                "name": f"noop-{i}",
                "match": {**match, "headers": [*match.get("headers", []), noop_header]},
                "route": _unary_action(NOOP_INGEST_CLUSTER),
            }
            for i, match in enumerate(ingest_matches)
        ]
    routes += [
        {
            "name": f"ingest-{i}",
            "match": match,
            "route": _unary_action(INGEST_CLUSTER),
        }
        for i, match in enumerate(ingest_matches)
    ]
    if layout.fanout:
        routes.append(
            {
                "name": "feed",
                "match": {"prefix": f"/{FEED_SERVICE}/"},
                "route": {
                    "cluster": SUBSCRIBER_CLUSTER,
                    # A viewer's stream is open for the whole match: neither
                    # a total nor an idle timeout applies; PINGs find the dead.
                    "timeout": "0s",
                    "idle_timeout": "0s",
                    "retry_policy": _connect_retry(),
                },
            }
        )
    routes.append(
        {
            "name": "reflection",
            "match": {"prefix": f"/{REFLECTION_SERVICE}/"},
            "route": {
                "cluster": INGEST_CLUSTER,
                "timeout": f"{REFLECTION_TIMEOUT_S}s",
            },
        }
    )
    routes.append(
        {
            "name": "not_found",
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 404,
                # Wrapped into a JSON status by the local reply mappers.
                "body": {"inline_string": NOT_FOUND_MESSAGE},
            },
            # The transcoder would answer unknown paths itself, as a 404
            # naming no API.
            "typed_per_filter_config": {
                "envoy.filters.http.grpc_json_transcoder": {
                    "@type": f"{_TYPES}.config.route.v3.FilterConfig",
                    "disabled": True,
                }
            },
        }
    )
    return routes


def _rest_matches() -> list[dict[str, Any]]:
    """One route match per HTTP rule of EmojiIngest, read from the descriptor set.

    The transcoder picks the method itself; these matches only keep REST
    paths the proto does not define away from the ingest processes.
    """
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(
        DESCRIPTOR_SET.read_bytes()
    )
    package, _, service_name = INGEST_SERVICE.rpartition(".")
    matches = []
    for proto_file in descriptors.file:
        if proto_file.package != package:
            continue
        for service in proto_file.service:
            if service.name != service_name:
                continue
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule = method.options.Extensions[annotations_pb2.http]
                    matches.append(_rest_match(rule))
    return matches


def _rest_match(rule: http_pb2.HttpRule) -> dict[str, Any]:
    verb = rule.WhichOneof("pattern")
    if verb is None or verb == "custom":
        raise ValueError(f"unsupported HTTP rule: {rule}")
    return {
        "safe_regex": {"regex": _template_regex(getattr(rule, verb))},
        "headers": [{"name": ":method", "string_match": {"exact": verb.upper()}}],
    }


def _template_regex(template: str) -> str:
    """``/v1/matches/{match_id}/emojis`` -> ``/v1/matches/[^/]+/emojis``."""
    parts = re.split(r"(\{[^}]*\})", template)
    return "".join(
        (".+" if part.endswith("**}") else "[^/]+")
        if part.startswith("{")
        else re.escape(part)
        for part in parts
    )


def _unary_action(cluster: str) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "timeout": f"{UNARY_TIMEOUT_S}s",
        "retry_policy": _connect_retry(),
    }


def _connect_retry() -> dict[str, Any]:
    """Retries only what never reached a backend, so no tap is written twice."""
    return {
        "retry_on": "connect-failure,refused-stream",
        "num_retries": 2,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": f"{_TYPES}.extensions.retry.host.previous_hosts"
                    ".v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }


# Clusters ----------------------------------------------------------------------


def _cluster(name: str, backends: tuple[str, ...]) -> dict[str, Any]:
    """A cluster of ``host:port`` backends; names other than IPs use DNS."""
    endpoints = []
    for backend in backends:
        host, _, port = backend.rpartition(":")
        endpoints.append({"endpoint": {"address": _address(int(port), host)}})
    resolved_by_dns = any(not _is_ip(b.rpartition(":")[0]) for b in backends)
    streams_per_connection = (
        SUBSCRIBER_STREAMS_PER_CONNECTION
        if name == SUBSCRIBER_CLUSTER
        else INGEST_STREAMS_PER_CONNECTION
    )
    return {
        "name": name,
        "type": "STRICT_DNS" if resolved_by_dns else "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST" if name == SUBSCRIBER_CLUSTER else "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": endpoints}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPES}.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "max_concurrent_streams": streams_per_connection,
                        "initial_stream_window_size": 1 << 20,
                        "initial_connection_window_size": 16 << 20,
                        "connection_keepalive": _keepalive(),
                    }
                },
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": priority,
                    "max_connections": CIRCUIT_LIMIT,
                    "max_pending_requests": CIRCUIT_LIMIT,
                    "max_requests": CIRCUIT_LIMIT,
                    "max_retries": 1_000,
                }
                for priority in ("DEFAULT", "HIGH")
            ]
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": f"{HEALTH_INTERVAL_S}s",
                # Without traffic Envoy would check only once a minute.
                "no_traffic_interval": f"{HEALTH_INTERVAL_S}s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": _HEALTH_SERVICE[name]},
            }
        ],
    }


def _keepalive() -> dict[str, Any]:
    return {
        "interval": f"{KEEPALIVE_INTERVAL_S}s",
        "timeout": f"{KEEPALIVE_TIMEOUT_S}s",
    }


def _address(port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:]+\]?", host))


# Command line ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Writes (or, with --check, compares) the multi-host bootstrap file."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.envoy_config",
        description="Writes deploy/envoy/envoy-multihost.yaml for Compose and k8s.",
    )
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)

    layout = MeshLayout(**MULTI_HOST_LAYOUT_ARGS)
    text = render(layout, multi_host_network(layout))
    if args.check:
        if MULTI_HOST_CONFIG.read_text() != text:
            print(f"{MULTI_HOST_CONFIG} is stale; run python -m deploy.envoy_config")
            return 1
        return 0
    MULTI_HOST_CONFIG.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
