"""`python -m services.auth`: serve the auth service."""

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.serve import serve

if __name__ == "__main__":
    settings = AuthSettings()
    serve(create_app(settings), settings)
