"""`python -m services.gateway`: serve /ws and the REST face until SIGTERM, then drain."""

from services.common import tracing
from services.common.runtime import setup_logging

from .app import create_app
from .drain import DrainingServer
from .server import config_for
from .settings import GatewaySettings
from .wsserver import raise_open_file_limit


def main() -> None:
    settings = GatewaySettings()
    setup_logging(settings.log_level)
    raise_open_file_limit()
    tracing.setup("gateway")  # OTLP export only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = create_app(settings)
    # SIGTERM: every socket gets a `reconnect` frame and a 1012 close before uvicorn stops.
    DrainingServer(config_for(app, settings), app).run()


if __name__ == "__main__":
    main()
