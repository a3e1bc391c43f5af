"""`python -m services.workflows`: serve the workflows service."""

from services.workflows.main import create_app
from services.workflows.settings import WorkflowsSettings
from shared.serve import serve

if __name__ == "__main__":
    settings = WorkflowsSettings()
    serve(create_app(settings), settings)
