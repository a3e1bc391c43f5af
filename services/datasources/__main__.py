"""`python -m services.datasources`: serve the data sources service."""

from services.datasources.main import create_app
from services.datasources.settings import DataSourcesSettings
from shared.serve import serve

if __name__ == "__main__":
    settings = DataSourcesSettings()
    serve(create_app(settings), settings)
