"""The platform as separate processes: nats-server, the services and the gateway."""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ManagedProcess, NatsServer, ServiceProcess, free_port

# Cheap argon2 keeps tests quick; production uses the settings' defaults. Every test logs
# in from 127.0.0.1, so the per-address login limit is lifted (test_login_throttle sets its own).
ADMIN = {"username": "platform-admin", "email": "admin@example.com", "password": "Adm1n-2026-pass"}
FAST_HASHING = {"AGENTFLOW_ARGON2_MEMORY_KIB": "8192", "AGENTFLOW_ARGON2_TIME_COST": "1"}


class Stack:
    def __init__(
        self,
        workdir: Path,
        store: dict[str, str],
        extra_env: dict[str, str] | None = None,
        workers: int = 2,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(workdir)
        self.jwt_secret = secrets.token_urlsafe(48)
        auth_port, workflows_port, gateway_port = free_port(), free_port(), free_port()
        gateway_metrics_port = free_port()  # the gateway's /metrics is not on its public port
        executor_port, datasources_port = free_port(), free_port()
        self.env: dict[str, str] = {
            # The machine's own AGENTFLOW_* settings must not leak into a test's platform.
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")},
            "AGENTFLOW_ENVIRONMENT": "test",
            # Nor a developer's .env in the checkout (the processes run there): no dotenv file.
            "AGENTFLOW_ENV_FILE": "",
            "AGENTFLOW_JWT_SECRET": self.jwt_secret,
            "AGENTFLOW_DATASOURCE_QUERY_KEY": secrets.token_urlsafe(48),
            "AGENTFLOW_NATS_URL": self.nats.url,
            "AGENTFLOW_AUTH_PORT": str(auth_port),
            "AGENTFLOW_AUTH_URL": f"http://127.0.0.1:{auth_port}",
            "AGENTFLOW_WORKFLOWS_PORT": str(workflows_port),
            "AGENTFLOW_WORKFLOWS_URL": f"http://127.0.0.1:{workflows_port}",
            "AGENTFLOW_EXECUTOR_PORT": str(executor_port),
            "AGENTFLOW_EXECUTOR_URL": f"http://127.0.0.1:{executor_port}",
            "AGENTFLOW_DATASOURCES_PORT": str(datasources_port),
            "AGENTFLOW_DATASOURCES_URL": f"http://127.0.0.1:{datasources_port}",
            "AGENTFLOW_GATEWAY_PORT": str(gateway_port),
            "AGENTFLOW_GATEWAY_HOST": "127.0.0.1",
            "AGENTFLOW_GATEWAY_METRICS_PORT": str(gateway_metrics_port),
            "AGENTFLOW_WAIT_FOR_UPSTREAMS_S": "0",
            "AGENTFLOW_OPENAPI_CACHE_S": "0",
            **FAST_HASHING,
            "AGENTFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
            "AGENTFLOW_REGISTER_MAX_PER_ADDRESS": "100000",
            "AGENTFLOW_BOOTSTRAP_ADMIN_USERNAME": ADMIN["username"],
            "AGENTFLOW_BOOTSTRAP_ADMIN_EMAIL": ADMIN["email"],
            "AGENTFLOW_BOOTSTRAP_ADMIN_PASSWORD": ADMIN["password"],
            **store,
            **(extra_env or {}),
        }
        self.auth = ServiceProcess("auth", self.env, auth_port, workdir)
        self.workflows = ServiceProcess("workflows", self.env, workflows_port, workdir)
        self.executor = ServiceProcess("executor", self.env, executor_port, workdir)
        self.datasources = ServiceProcess("datasources", self.env, datasources_port, workdir)
        self.workers: list[ManagedProcess] = []
        for _ in range(workers):
            self._new_worker()
        self.gateway = ServiceProcess("gateway", self.env, gateway_port, workdir)
        self.base_url = self.gateway.base_url
        self.gateway_metrics_url = f"http://127.0.0.1:{gateway_metrics_port}"

    def start(self) -> Stack:
        self.nats.start()
        for worker in self.workers:
            worker.start()
        for service in self.services:
            service.start(wait=False)
        for service in self.services:
            service.wait_healthy()
        for service in self.services:
            service.wait_ready()
        return self

    def _new_worker(self) -> ManagedProcess:
        port = free_port()  # each worker serves its probes and metrics on a port of its own
        worker = ManagedProcess(
            f"worker{len(self.workers)}",
            [sys.executable, "-m", "services.executor.worker"],
            # Workers never hold the JWT signing secret: they query data sources with grants.
            {**self.worker_env(), "AGENTFLOW_WORKER_METRICS_PORT": str(port)},
            port,
            self.workdir,
        )
        self.workers.append(worker)
        return worker

    def worker_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k != "AGENTFLOW_JWT_SECRET"}

    def add_worker(self) -> ManagedProcess:
        """Start one more worker on the running stack."""
        worker = self._new_worker()
        worker.start()
        return worker

    @property
    def services(self) -> tuple[ServiceProcess, ...]:
        return (self.auth, self.workflows, self.executor, self.datasources, self.gateway)

    def stop(self) -> None:
        # Every process shuts down at once (one by one, each graceful shutdown waited for the
        # last: seconds per test); nats-server last, so their final publishes find it. A test
        # is over here: a worker still finishing a slow node in its shutdown grace is killed
        # after a few seconds instead of being waited for.
        processes = (self.gateway, self.executor, *self.workers, self.datasources,
                     self.workflows, self.auth)  # fmt: skip
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait_stopped(timeout=5.0)
        self.nats.stop()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, **kwargs)

    # -- a user's journey, as a client of :8037 would walk it --------------------------------

    def register(self, username: str | None = None, **overrides: str) -> dict[str, Any]:
        body = new_user(username, **overrides)
        with self.client() as client:
            response = client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        return {**response.json(), "password": body["password"]}

    def user_client(self) -> tuple[httpx.Client, dict[str, Any]]:
        """A new user, registered and logged in: a client that sends their token."""
        user = self.register()
        token = self.login(user["username"], user["password"])
        return self.client(headers={"Authorization": f"Bearer {token}"}), user

    def admin_client(self) -> httpx.Client:
        token = self.login(ADMIN["username"], ADMIN["password"])
        return self.client(headers={"Authorization": f"Bearer {token}"})

    def login(self, username: str, password: str) -> str:
        with self.client() as client:
            response = client.post(
                "/api/v1/auth/login", data={"username": username, "password": password}
            )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert isinstance(token, str)
        return token


def new_user(username: str | None = None, **overrides: str) -> dict[str, str]:
    name = username or f"user_{uuid.uuid4().hex[:10]}"
    return {
        "username": name,
        "email": f"{name}@example.com",
        "password": "password123",
        **overrides,
    }
