"""`python -m services.auth`: serve the auth service."""

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.serve import serve
from shared.settings_loading import load_settings

if __name__ == "__main__":
    settings = load_settings(AuthSettings, "agentflow-auth")
    serve(create_app(settings), settings)
