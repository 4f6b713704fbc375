"""The janitor's metrics (STYLE.md point 10):

- `sharetube_janitor_leader` (gauge): 1 while this replica holds the lease.
- `sharetube_janitor_leader_changes_total` (counter): times this replica became leader.
- `sharetube_janitor_job_runs_total{job, outcome}` (counter): outcome `ok` or `error`.
- `sharetube_janitor_job_duration_seconds{job}` (histogram).
- `sharetube_janitor_rows_total{job}` (counter): rows deleted or sessions changed by a job.
"""

from prometheus_client import Counter, Gauge, Histogram

LEADER = Gauge("sharetube_janitor_leader", "1 while this replica holds the janitor lease")
LEADER_CHANGES = Counter(
    "sharetube_janitor_leader_changes_total", "Times this replica became the janitor leader"
)
JOB_RUNS = Counter(
    "sharetube_janitor_job_runs_total", "Janitor job runs by outcome", ["job", "outcome"]
)
JOB_DURATION = Histogram(
    "sharetube_janitor_job_duration_seconds",
    "How long one janitor job run took",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
)
ROWS = Counter("sharetube_janitor_rows_total", "Rows or sessions a janitor job changed", ["job"])
