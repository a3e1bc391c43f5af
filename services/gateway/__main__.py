"""`python -m services.gateway`: serve the public API on :8037 once upstreams answer."""

import asyncio

from services.gateway.main import create_app, wait_for_upstreams
from services.gateway.settings import GatewaySettings
from shared.serve import serve
from shared.settings_loading import load_settings

if __name__ == "__main__":
    settings = load_settings(GatewaySettings, "agentflow-gateway")
    asyncio.run(wait_for_upstreams(settings))
    serve(create_app(settings), settings)
