"""`python -m services.datasources`: serve the data sources service."""

from services.datasources.main import create_app
from services.datasources.settings import DataSourcesSettings
from shared.serve import serve
from shared.settings_loading import load_settings

if __name__ == "__main__":
    settings = load_settings(DataSourcesSettings, "agentflow-datasources")
    serve(create_app(settings), settings)
