"""`python -m services.executor`: serve the executor api (and its orchestrator)."""

from services.executor.main import create_app
from services.executor.settings import ExecutorSettings
from shared.serve import serve
from shared.settings_loading import load_settings

if __name__ == "__main__":
    settings = load_settings(ExecutorSettings, "agentflow-executor")
    serve(create_app(settings), settings)
