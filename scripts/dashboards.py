"""Write the Grafana dashboards (deploy/grafana/dashboards/*.json) from one description.

`python scripts/dashboards.py` regenerates them; tests/e2e/test_dashboards.py runs every
panel's query against a real Prometheus scraping the running system. Panels read the
`sharetube_*` metrics each service declares in its metrics.py; `job` is the service name
(the chart's ServiceMonitor jobLabel, and the local Prometheus config in the test).
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
SERVICES = ("gateway", "rooms", "queue", "chat", "auth", "janitor")


def panel(title: str, exprs: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries"):
    return {
        "title": title,
        "type": kind,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def mean_of(histogram: str, by: str = "") -> str:
    """The mean of a size histogram over the rate window (commands per group, per line)."""
    group = f" by ({by}) " if by else ""
    return f"sum{group}(rate({histogram}_sum[{RI}])) / sum{group}(rate({histogram}_count[{RI}]))"


def left_alone(metric: str) -> dict:
    """Commands a group handed back to the one-command path, by why (refused, no_room,
    group_failed): a rising group_failed means groups keep failing whole."""
    return panel(
        "Commands left to the one-command path",
        [(f"sum by (reason) (rate({metric}[{RI}])) or vector(0)", "{{reason}}")],
        "short",
    )


def red(service: str) -> list[dict]:
    """Rate, errors, duration of a service's commands (services/common/metrics.py)."""
    sel = f'service="{service}"'
    return [
        panel(
            "Commands per second",
            [(f"sum by (command) (rate(sharetube_commands_total{{{sel}}}[{RI}]))", "{{command}}")],
            "reqps",
        ),
        panel(
            "Errors per second by code",
            [
                (
                    f'sum by (code) (rate(sharetube_commands_total{{{sel},code!="ok"}}[{RI}]))'
                    f" or vector(0)",
                    "{{code}}",
                )
            ],
            "reqps",
        ),
        panel(
            "Command duration p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le, command) "
                    f"(rate(sharetube_command_duration_seconds_bucket{{{sel}}}[{RI}])))",
                    "{{command}}",
                )
            ],
            "s",
        ),
        panel(
            "DB statement time p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le, operation) (rate("
                    f'sharetube_db_query_duration_seconds_bucket{{job="{service}"}}[{RI}])))',
                    "{{operation}}",
                )
            ],
            "s",
        ),
    ]


def dashboard(uid: str, title: str, description: str, panels: list[dict]) -> dict:
    laid = []
    for i, p in enumerate(panels):
        p = {"id": i + 1, **p, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}}
        laid.append(p)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sharetube"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                }
            ]
        },
        "panels": laid,
    }


def overview() -> dict:
    jobs = "|".join(SERVICES)
    return dashboard(
        "sharetube-overview",
        "ShareTube / Overview",
        "The whole system: replicas, sockets, rooms, command rate, errors and latency.",
        [
            panel("Replicas up", [(f'sum by (job) (up{{job=~"{jobs}"}})', "{{job}}")]),
            panel("Open sockets", [("sum(sharetube_gateway_connections)", "sockets")]),
            panel("Rooms active", [("max(sharetube_rooms_active)", "rooms")]),
            panel(
                "Commands per second by service",
                [(f"sum by (service) (rate(sharetube_commands_total[{RI}]))", "{{service}}")],
                "reqps",
            ),
            panel(
                "Error ratio by service",
                [
                    (
                        'sum by (service) (rate(sharetube_commands_total{code!="ok"}'
                        f"[{RI}])) / sum by (service) (rate(sharetube_commands_total[{RI}]))"
                        " or 0 * sum by (service) "
                        f"(rate(sharetube_commands_total[{RI}]))",
                        "{{service}}",
                    )
                ],
                "percentunit",
            ),
            panel(
                "Command duration p95 by service",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, service) "
                        f"(rate(sharetube_command_duration_seconds_bucket[{RI}])))",
                        "{{service}}",
                    )
                ],
                "s",
            ),
            panel(
                "NATS request latency p95 by subject",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, subject) "
                        f"(rate(sharetube_bus_request_duration_seconds_bucket[{RI}])))",
                        "{{subject}}",
                    )
                ],
                "s",
            ),
            panel(
                "NATS errors per second",
                [
                    (
                        f"sum by (kind) (rate(sharetube_nats_errors_total[{RI}])) or vector(0)",
                        "{{kind}}",
                    )
                ],
                "short",
            ),
            # A full collection stops a whole process: a fan-out or command stalled by one
            # shows here (services/common/gcpause.py).
            panel(
                "Garbage-collection pause p99 by service",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, job) "
                        f"(rate(sharetube_gc_pause_seconds_bucket[{RI}])))",
                        "{{job}}",
                    )
                ],
                "s",
            ),
            panel(
                "Full collections per second by service",
                [
                    (
                        "sum by (job) (rate("
                        f'sharetube_gc_pause_seconds_count{{generation="2"}}[{RI}]))',
                        "{{job}}",
                    )
                ],
                "short",
            ),
        ],
    )


def gateway() -> dict:
    return dashboard(
        "sharetube-gateway",
        "ShareTube / Gateway",
        "Sockets, rooms, frames, fan-out and slow clients per gateway replica.",
        [
            panel("Sockets per replica", [("sharetube_gateway_connections", "{{instance}}")]),
            panel("Rooms with local members", [("sharetube_gateway_rooms", "{{instance}}")]),
            panel(
                "Frames received per second by type",
                [
                    (
                        f"sum by (type) (rate(sharetube_gateway_frames_received_total[{RI}]))",
                        "{{type}}",
                    )
                ],
                "short",
            ),
            panel(
                "Frames sent per second by type",
                [(f"sum by (type) (rate(sharetube_gateway_frames_sent_total[{RI}]))", "{{type}}")],
                "short",
            ),
            panel(
                "Fan-out time p99",
                [
                    (
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(sharetube_gateway_fanout_seconds_bucket[{RI}])))",
                        "p99",
                    )
                ],
                "s",
            ),
            panel(
                "Slow clients closed per second",
                [(f"sum(rate(sharetube_gateway_slow_consumer_closes_total[{RI}]))", "closed")],
            ),
            panel(
                "NATS request latency p95 (gateway → services)",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, subject) (rate("
                        f'sharetube_bus_request_duration_seconds_bucket{{job="gateway"}}[{RI}])))',
                        "{{subject}}",
                    )
                ],
                "s",
            ),
            panel(
                "Bus request outcomes per second",
                [
                    (
                        "sum by (outcome) (rate("
                        f'sharetube_bus_request_duration_seconds_count{{job="gateway"}}[{RI}]))',
                        "{{outcome}}",
                    )
                ],
                "reqps",
            ),
            # After a command ended in timeout or internal (services/gateway/sequencecheck.py):
            # `resynced` means a room's events had been committed and never published.
            panel(
                "Room sequence checks and sweeps per second by outcome",
                [
                    (
                        "sum by (outcome) (rate("
                        f"sharetube_gateway_sequence_checks_total[{RI}])) or vector(0)",
                        "{{outcome}}",
                    ),
                    # The periodic sweep (sequencesweep.py): `behind` rooms get a check.
                    (
                        "sum by (outcome) (rate("
                        f"sharetube_gateway_sequence_swept_rooms_total[{RI}])) or vector(0)",
                        "swept {{outcome}}",
                    ),
                ],
                "short",
            ),
        ],
    )


def service(name: str, title: str, description: str, own: list[dict]) -> dict:
    return dashboard(f"sharetube-{name}", f"ShareTube / {title}", description, red(name) + own)


def rooms() -> dict:
    return service(
        "rooms",
        "Rooms",
        "Room commands (RED), rooms active, playback commands.",
        [
            panel("Rooms active", [("max(sharetube_rooms_active)", "rooms")]),
            panel("Members online", [("max(sharetube_rooms_members_online)", "members")]),
            panel(
                "Playback commands per second",
                [
                    (
                        "sum by (command, code) "
                        f"(rate(sharetube_rooms_playback_commands_total[{RI}]))",
                        "{{command}} {{code}}",
                    )
                ],
                "reqps",
            ),
            # Chat and the queue ask rooms before every command; rooms reads the questions
            # that arrive together in one statement (services/rooms/access.py).
            panel(
                "Access checks read per statement",
                [(mean_of("sharetube_rooms_access_batch_size"), "checks per statement")],
            ),
            # Playback controls commit in groups (controls.py); joins, players' reports and
            # disconnects of one room wait in lines and go in one transaction (lines.py).
            panel(
                "Commands per transaction",
                [
                    (mean_of("sharetube_rooms_control_group_size"), "playback controls per group"),
                    (mean_of("sharetube_rooms_line_size", "kind"), "{{kind}} per line"),
                ],
            ),
            left_alone("sharetube_rooms_controls_alone_total"),
        ],
    )


def queue() -> dict:
    return service(
        "queue",
        "Queue",
        "Queue commands (RED) and queue changes.",
        [
            panel(
                "Queue changes per second",
                [
                    (
                        f"sum by (command, code) (rate(sharetube_queue_changes_total[{RI}]))",
                        "{{command}} {{code}}",
                    )
                ],
                "reqps",
            ),
            panel(
                "Commands per transaction",
                [(mean_of("sharetube_queue_command_group_size"), "queue commands per group")],
            ),
            left_alone("sharetube_queue_commands_alone_total"),
            # Every join reads the queue; the reads that arrive together go in one
            # statement (services/common/batchedreads.py).
            panel(
                "Snapshot reads per statement",
                [(mean_of("sharetube_queue_snapshot_batch_size"), "queue.load per statement")],
            ),
        ],
    )


def chat() -> dict:
    return service(
        "chat",
        "Chat",
        "Chat commands (RED) and messages.",
        [
            panel(
                "Messages per second by outcome",
                [(f"sum by (code) (rate(sharetube_chat_messages_total[{RI}]))", "{{code}}")],
                "short",
            ),
            panel(
                "Deletions per second by outcome",
                [(f"sum by (code) (rate(sharetube_chat_deletions_total[{RI}]))", "{{code}}")],
                "short",
            ),
            panel(
                "Messages per stored group",
                [(mean_of("sharetube_chat_send_group_size"), "messages per statement")],
            ),
            # Every join reads a history page; the reads that arrive together go in one
            # statement (services/common/batchedreads.py).
            panel(
                "History pages per statement",
                [(mean_of("sharetube_chat_history_batch_size"), "pages per statement")],
            ),
        ],
    )


def auth() -> dict:
    return service(
        "auth",
        "Auth",
        "Auth commands (RED) and sign-ins.",
        [
            panel(
                "Sign-ins per second",
                [
                    (
                        f"sum by (command, code) (rate(sharetube_auth_sign_ins_total[{RI}]))",
                        "{{command}} {{code}}",
                    )
                ],
                "short",
            )
        ],
    )


def janitor() -> dict:
    return dashboard(
        "sharetube-janitor",
        "ShareTube / Janitor",
        "Leadership and the periodic jobs of the leader.",
        [
            panel("Leader (1 = holds the lease)", [("sharetube_janitor_leader", "{{instance}}")]),
            panel(
                "Leadership changes",
                [(f"sum(increase(sharetube_janitor_leader_changes_total[{RI}]))", "changes")],
            ),
            panel(
                "Job runs per second by outcome",
                [
                    (
                        f"sum by (job, outcome) (rate(sharetube_janitor_job_runs_total[{RI}]))",
                        "{{job}} {{outcome}}",
                    )
                ],
                "short",
            ),
            panel(
                "Job duration p95",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, job) "
                        f"(rate(sharetube_janitor_job_duration_seconds_bucket[{RI}])))",
                        "{{job}}",
                    )
                ],
                "s",
            ),
            panel(
                "Rows or sessions changed per second by job",
                [(f"sum by (job) (rate(sharetube_janitor_rows_total[{RI}]))", "{{job}}")],
                "short",
            ),
        ],
    )


def sync() -> dict:
    buckets = f"sum by (le) (rate(sharetube_gateway_sync_drift_seconds_bucket[{RI}]))"
    return dashboard(
        "sharetube-sync",
        "ShareTube / Sync quality",
        "How far players are from the room's expected position, as clients report it "
        "(drift.report), and the playback rates their correction uses.",
        [
            panel(
                "Drift p50 / p95 / p99",
                [
                    (f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ],
                "s",
            ),
            panel("Drift distribution", [(buckets, "{{le}}")], "short", "heatmap"),
            panel(
                "Share of reports within 100 ms",
                [
                    (
                        'sum(rate(sharetube_gateway_sync_drift_seconds_bucket{le="0.1"}'
                        f"[{RI}])) / sum(rate(sharetube_gateway_sync_drift_seconds_count[{RI}]))",
                        "≤ 100 ms",
                    )
                ],
                "percentunit",
            ),
            panel(
                "Drift reports per second",
                [(f"sum(rate(sharetube_gateway_sync_drift_seconds_count[{RI}]))", "reports")],
                "short",
            ),
            panel(
                "Playback rate p5 / p95",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(sharetube_gateway_playback_rate_bucket[{RI}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.05, 0.95)
                ],
                "short",
            ),
            panel(
                "Playback commands per second",
                [
                    (
                        f"sum by (command) (rate(sharetube_rooms_playback_commands_total[{RI}]))",
                        "{{command}}",
                    )
                ],
                "reqps",
            ),
        ],
    )


def main() -> None:
    boards = {
        "overview": overview(),
        "gateway": gateway(),
        "rooms": rooms(),
        "queue": queue(),
        "chat": chat(),
        "auth": auth(),
        "janitor": janitor(),
        "sync": sync(),
    }
    for name, board in boards.items():
        (OUT / f"{name}.json").write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
