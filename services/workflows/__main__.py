"""`python -m services.workflows`: serve the workflows service."""

from services.workflows.main import create_app
from services.workflows.settings import WorkflowsSettings
from shared.serve import serve
from shared.settings_loading import load_settings

if __name__ == "__main__":
    settings = load_settings(WorkflowsSettings, "agentflow-workflows")
    serve(create_app(settings), settings)
