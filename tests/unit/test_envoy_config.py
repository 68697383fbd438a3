"""Envoy's bootstrap: accepted by the real Envoy, with the settings that matter."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from deploy import envoy_config
from deploy.layout import MeshLayout

ENVOY = pathlib.Path(sys.executable).parent / "envoy"


def _layout(tmp_path: pathlib.Path, **overrides: Any) -> MeshLayout:
    return MeshLayout(run_dir=tmp_path / "run", port_base=22000, **overrides)


LAYOUTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-fanout": {"fanout": False, "aggregator": False},
    "noop-ingest": {"noop_ingest": True},
    "wide": {"ingest_processes": 3, "clusters": 4, "subscribers_per_cluster": 5},
    "one-origin": {"cors_origins": ("https://watch.example",)},
}


def _config(layout: MeshLayout) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(envoy_config.render(layout))
    return config


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    manager: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = _manager(config)["route_config"]["virtual_hosts"][0][
        "routes"
    ]
    return routes


def _clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def _validate(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Envoy's own check of a config file."""
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(not ENVOY.exists(), reason=f"no Envoy binary at {ENVOY}")
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_rendered_bootstrap_passes_envoy_validation(
    tmp_path: pathlib.Path, name: str
) -> None:
    """Envoy itself accepts the bootstrap for each kind of layout."""
    layout = _layout(tmp_path, **LAYOUTS[name])
    # Envoy opens the access log while validating, as it does at start.
    layout.logs_dir.mkdir(parents=True)
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_config.render(layout))

    result = _validate(path)

    assert result.returncode == 0, result.stderr[-2000:]
    assert f"configuration '{path}' OK" in result.stdout + result.stderr


def test_listener_and_admin_listen_on_loopback_only(tmp_path: pathlib.Path) -> None:
    """The public listener and the admin interface bind 127.0.0.1 only."""
    layout = _layout(tmp_path)
    config = _config(layout)

    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": layout.envoy_port,
    }
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": layout.envoy_admin_port,
    }


def test_swarm_feed_streams_have_no_route_or_idle_timeout(
    tmp_path: pathlib.Path,
) -> None:
    """SwarmFeed routes disable both timeouts, so long streams are not cut at 15 s."""
    (feed,) = [
        r
        for r in _routes(_config(_layout(tmp_path)))
        if r["match"].get("prefix") == "/emostream.v1.SwarmFeed/"
    ]

    assert feed["route"]["cluster"] == "subscribers"
    assert feed["route"]["timeout"] == "0s"
    assert feed["route"]["idle_timeout"] == "0s"


def test_unary_ingest_routes_have_a_bounded_timeout(tmp_path: pathlib.Path) -> None:
    """Every route to an ingest cluster carries a finite, non-zero timeout."""
    ingest_routes = [
        r
        for r in _routes(_config(_layout(tmp_path, noop_ingest=True)))
        if r.get("route", {}).get("cluster", "").startswith("ingest")
        and r["name"] != "reflection"
    ]

    assert ingest_routes
    assert {r["route"]["timeout"] for r in ingest_routes} == {"10s"}


def test_dead_peers_are_found_by_http2_keepalive_both_ways(
    tmp_path: pathlib.Path,
) -> None:
    """Downstream and every upstream HTTP/2 connection ping every 20 s, 10 s timeout."""
    config = _config(_layout(tmp_path))
    expected = {"interval": "20s", "timeout": "10s"}

    downstream = _manager(config)["http2_protocol_options"]
    assert downstream["connection_keepalive"] == expected
    for cluster in _clusters(config).values():
        upstream = _upstream_http2(cluster)
        assert upstream["connection_keepalive"] == expected, cluster["name"]


def test_stream_limits_allow_tens_of_thousands(tmp_path: pathlib.Path) -> None:
    """Concurrent streams and circuit breakers are far above the 1024 defaults."""
    config = _config(_layout(tmp_path))

    assert _manager(config)["http2_protocol_options"]["max_concurrent_streams"] >= (
        50_000
    )
    for cluster in _clusters(config).values():
        for threshold in cluster["circuit_breakers"]["thresholds"]:
            for limit in ("max_connections", "max_pending_requests", "max_requests"):
                assert threshold[limit] >= 100_000, (cluster["name"], limit)


def test_subscriber_hosts_get_several_upstream_connections(
    tmp_path: pathlib.Path,
) -> None:
    """Subscriber streams are capped per connection, so Envoy opens more than one."""
    subscribers = _clusters(_config(_layout(tmp_path)))["subscribers"]

    assert subscribers["lb_policy"] == "LEAST_REQUEST"
    assert 1_000 < _upstream_http2(subscribers)["max_concurrent_streams"] < 20_000


def test_clusters_are_health_checked_with_grpc_every_second(
    tmp_path: pathlib.Path,
) -> None:
    """Each cluster has a gRPC health check at a 1 s interval, also without traffic."""
    for cluster in _clusters(_config(_layout(tmp_path, noop_ingest=True))).values():
        (check,) = cluster["health_checks"]
        assert "grpc_health_check" in check, cluster["name"]
        assert check["interval"] == "1s"
        assert check["no_traffic_interval"] == "1s"


def test_cluster_endpoints_follow_the_layout(tmp_path: pathlib.Path) -> None:
    """Ingest, no-op ingest and subscriber clusters hold exactly the layout's ports."""
    layout = _layout(
        tmp_path, noop_ingest=True, ingest_processes=2, subscribers_per_cluster=3
    )
    clusters = _clusters(_config(layout))

    assert _ports(clusters["ingest"]) == layout.ingest_ports
    assert _ports(clusters["ingest_noop"]) == [layout.noop_ingest_port]
    assert _ports(clusters["subscribers"]) == layout.subscriber_ports


def test_clusters_to_wait_for_match_the_started_roles(tmp_path: pathlib.Path) -> None:
    """Only clusters whose backends the layout starts are waited on."""
    assert envoy_config.clusters(_layout(tmp_path)) == ["ingest", "subscribers"]
    assert envoy_config.clusters(_layout(tmp_path, fanout=False, noop_ingest=True)) == [
        "ingest",
        "ingest_noop",
    ]


def test_no_fanout_layout_has_no_swarm_feed_route(tmp_path: pathlib.Path) -> None:
    """Without fan-out, SwarmFeed falls through to the 404 route."""
    config = _config(_layout(tmp_path, fanout=False))

    assert "subscribers" not in _clusters(config)
    assert not [r for r in _routes(config) if r.get("name") == "feed"]


def test_noop_header_routes_precede_the_real_ingest(tmp_path: pathlib.Path) -> None:
    """Requests marked for the no-op backend match before the real ingest routes."""
    routes = _routes(_config(_layout(tmp_path, noop_ingest=True)))
    clusters = [r["route"]["cluster"] for r in routes if "route" in r]

    first_real = clusters.index("ingest")
    assert set(clusters[:first_real]) == {"ingest_noop"}
    for route in routes[:first_real]:
        assert {
            "name": "x-emostream-backend",
            "string_match": {"exact": "noop"},
        } in route["match"]["headers"]


def test_rest_routes_come_from_the_proto_http_rules(tmp_path: pathlib.Path) -> None:
    """REST paths routed to ingest are exactly those the proto annotates."""
    regexes = {
        r["match"]["safe_regex"]["regex"]
        for r in _routes(_config(_layout(tmp_path)))
        if "safe_regex" in r["match"]
    }

    assert regexes == {"/v1/matches/[^/]+/emojis", "/v1/emojis:batch"}


def test_unknown_paths_get_a_404_from_envoy(tmp_path: pathlib.Path) -> None:
    """The last route answers every other path itself; the mappers make it JSON."""
    last = _routes(_config(_layout(tmp_path)))[-1]

    assert last["match"] == {"prefix": "/"}
    assert last["direct_response"]["status"] == 404
    body = last["direct_response"]["body"]["inline_string"]
    assert body == envoy_config.NOT_FOUND_MESSAGE
    # Plain text here, so the local reply mapper wraps it exactly once.
    assert not body.lstrip().startswith("{")
    assert "response_headers_to_add" not in last


def test_envoy_errors_for_rest_callers_are_json_statuses(
    tmp_path: pathlib.Path,
) -> None:
    """Each local reply mapper writes code, message and details as application/json."""
    mappers = _manager(_config(_layout(tmp_path)))["local_reply_config"]["mappers"]
    statuses = {}
    for mapper in mappers:
        status_filter, caller_filter = mapper["filter"]["and_filter"]["filters"]
        comparison = status_filter["status_code_filter"]["comparison"]
        statuses[(comparison["op"], comparison["value"]["default_value"])] = mapper[
            "body_format_override"
        ]["json_format"]["code"]
        assert caller_filter == envoy_config.REST_CALLER
        override = mapper["body_format_override"]
        assert override["content_type"] == "application/json"
        assert override["json_format"]["message"] == "%LOCAL_REPLY_BODY%"
        assert override["json_format"]["details"] == []

    assert statuses[("EQ", 400)] == 3  # INVALID_ARGUMENT
    assert statuses[("EQ", 404)] == 5  # NOT_FOUND
    assert statuses[("EQ", 503)] == 14  # UNAVAILABLE
    # The catch-all comes last, so the exact statuses match first.
    assert list(statuses)[-1] == ("GE", 400)
    assert statuses[("GE", 400)] == 2  # UNKNOWN


def test_grpc_callers_are_left_to_grpc_status(tmp_path: pathlib.Path) -> None:
    """gRPC content types match no mapper unless the transcoder rewrote a REST call."""
    (by_type, transcoded) = envoy_config.REST_CALLER["or_filter"]["filters"]

    header = by_type["header_filter"]["header"]
    assert header["name"] == "content-type"
    assert header["string_match"] == {"prefix": "application/grpc"}
    assert header["invert_match"] is True
    assert header["treat_missing_header_as_empty"] is True
    assert transcoded["header_filter"]["header"] == {
        "name": "x-envoy-original-path",
        "present_match": True,
    }


def test_cors_allows_only_the_layout_origins(tmp_path: pathlib.Path) -> None:
    """CORS names exactly the configured origins and never forwards other preflights."""
    origins = ("https://watch.example", "http://localhost:3000")
    config = _config(_layout(tmp_path, cors_origins=origins))
    (host,) = _manager(config)["route_config"]["virtual_hosts"]
    policy = host["typed_per_filter_config"]["envoy.filters.http.cors"]

    assert policy["allow_origin_string_match"] == [{"exact": o} for o in origins]
    assert policy["forward_not_matching_preflights"] is False
    assert "x-grpc-web" in policy["allow_headers"]


def test_transcoder_reads_the_descriptor_set_and_keeps_field_names(
    tmp_path: pathlib.Path,
) -> None:
    """REST uses the checked-in descriptor set, proto field names and JSON errors."""
    filters = {
        f["name"]: f["typed_config"]
        for f in _manager(_config(_layout(tmp_path)))["http_filters"]
    }
    transcoder = filters["envoy.filters.http.grpc_json_transcoder"]

    assert pathlib.Path(transcoder["proto_descriptor"]).is_absolute()
    assert pathlib.Path(transcoder["proto_descriptor"]).exists()
    assert transcoder["services"] == ["emostream.v1.EmojiIngest"]
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["request_validation_options"]["reject_unknown_method"] is True
    assert list(filters)[-1] == "envoy.filters.http.router"


def _upstream_http2(cluster: dict[str, Any]) -> dict[str, Any]:
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    http2: dict[str, Any] = options["explicit_http_config"]["http2_protocol_options"]
    return http2


def _ports(cluster: dict[str, Any]) -> list[int]:
    (locality,) = cluster["load_assignment"]["endpoints"]
    return [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in locality["lb_endpoints"]
    ]


def test_multi_host_bootstrap_file_is_current() -> None:
    """deploy/envoy/envoy-multihost.yaml equals what deploy.envoy_config writes."""
    assert envoy_config.main(["--check"]) == 0


@pytest.mark.skipif(not ENVOY.exists(), reason=f"no Envoy binary at {ENVOY}")
def test_multi_host_bootstrap_passes_envoy_validation(tmp_path: pathlib.Path) -> None:
    """The multi-host bootstrap validates once its image paths point at this tree."""
    text = envoy_config.MULTI_HOST_CONFIG.read_text().replace(
        "/app/deploy/envoy/emostream.pb", str(envoy_config.DESCRIPTOR_SET)
    )
    path = tmp_path / "envoy-multihost.yaml"
    path.write_text(text)

    result = _validate(path)

    assert result.returncode == 0, result.stderr[-2000:]


def test_multi_host_bootstrap_listens_publicly_and_resolves_names() -> None:
    """On many hosts Envoy listens on all interfaces and finds backends by DNS."""
    config = json.loads(envoy_config.MULTI_HOST_CONFIG.read_text())
    (listener,) = config["static_resources"]["listeners"]
    clusters = _clusters(config)

    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert set(clusters) == {"ingest", "subscribers"}
    assert {c["type"] for c in clusters.values()} == {"STRICT_DNS"}
