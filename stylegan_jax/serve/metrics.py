"""Request counts, latency histograms and batching figures in the Prometheus text format
(exposition format 0.0.4), written by hand: a few counters need no client library."""

from __future__ import annotations

import time
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self):
        self.started = time.time()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = {}  # route -> counts per bucket, then +Inf
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.disconnects = 0
        self.in_flight = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        counts = self.latency.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1))
        for i, edge in enumerate(LATENCY_BUCKETS):
            if seconds <= edge:
                counts[i] += 1
        counts[-1] += 1
        self.latency_sum[route] += seconds

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The exposition text; `gauges` maps name -> (help, value) for live figures."""
        out = ["# HELP sgj_requests_total HTTP requests answered, by route and status.",
               "# TYPE sgj_requests_total counter"]
        for (route, status), n in sorted(self.requests.items()):
            out.append(f'sgj_requests_total{{route="{route}",status="{status}"}} {n}')
        out += ["# HELP sgj_request_duration_seconds Time from request to response start.",
                "# TYPE sgj_request_duration_seconds histogram"]
        for route, counts in sorted(self.latency.items()):
            for edge, n in zip((*LATENCY_BUCKETS, "+Inf"), counts, strict=True):
                out.append(f'sgj_request_duration_seconds_bucket{{route="{route}",'
                           f'le="{edge}"}} {n}')
            out.append(f'sgj_request_duration_seconds_sum{{route="{route}"}} '
                       f'{self.latency_sum[route]:.6f}')
            out.append(f'sgj_request_duration_seconds_count{{route="{route}"}} {counts[-1]}')
        for name, (help_text, value) in gauges.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return "\n".join(out) + "\n"
