"""The auth service's metrics (STYLE.md point 10), beside the shared command metrics:

- `sharetube_auth_sign_ins_total{command, code}` (counter): guest and Google sign-ins by
  outcome code.
"""

from prometheus_client import Counter

from services.common.bus import CommandRouter

SIGN_INS = Counter(
    "sharetube_auth_sign_ins_total", "Sign-ins by kind and outcome", ["command", "code"]
)


def attach(router: CommandRouter) -> None:
    def observe(command: str, code: str) -> None:
        if command in ("guest", "google_finish"):
            SIGN_INS.labels(command, code).inc()

    router.observe(observe)
