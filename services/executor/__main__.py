"""`python -m services.executor`: serve the executor api (and its orchestrator)."""

from services.executor.main import create_app
from services.executor.settings import ExecutorSettings
from shared.serve import serve

if __name__ == "__main__":
    settings = ExecutorSettings()
    serve(create_app(settings), settings)
