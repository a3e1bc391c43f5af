"""`python -m services.executor.worker`: run one node worker (scale by running more)."""

import asyncio

from services.executor.worker.main import main

if __name__ == "__main__":
    asyncio.run(main())
