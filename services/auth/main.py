"""Composition root of the auth service."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from services.auth import api
from services.auth.application import AdminAccountMismatch, AuthApplication
from services.auth.integration import to_integration_event
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle, RegistrationThrottle
from shared.logging import configure_logging
from shared.runtime import ServiceRuntime
from shared.security.tokens import TokenService
from shared.web.app import event_sourced_app

log = logging.getLogger("agentflow.auth")


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    configure_logging(settings, service="auth")
    application = AuthApplication(settings)
    runtime = ServiceRuntime(application, to_integration_event, source="auth")

    async def bootstrap() -> None:
        await asyncio.to_thread(bootstrap_admin, application, settings)

    return event_sourced_app(
        service="auth",
        title="Agentflow auth service",
        description="Users, passwords and tokens.",
        runtime=runtime,
        routers=[api.router],
        state={
            "settings": settings,
            "auth": application,
            "tokens": TokenService(settings),
            "login_throttle": LoginThrottle(
                max_per_user=settings.login_max_failures_per_user,
                max_per_address=settings.login_max_failures_per_address,
                window_s=settings.login_failure_window_s,
            ),
            "register_throttle": RegistrationThrottle(
                max_per_address=settings.register_max_per_address,
                window_s=settings.register_window_s,
            ),
        },
        on_start=[bootstrap],
    )


def bootstrap_admin(application: AuthApplication, settings: AuthSettings) -> None:
    username, email = settings.bootstrap_admin_username, settings.bootstrap_admin_email
    password = settings.bootstrap_admin_password
    if username and email and password:
        try:
            user = application.ensure_admin(
                username,
                email,
                password.get_secret_value(),
                promote=settings.bootstrap_admin_promote,
            )
        except AdminAccountMismatch:
            # Serve anyway: refusing to start would let whoever took the name stop the service.
            log.error(
                "bootstrap admin %s NOT made: an account of that name exists with another "
                "email or password; set AGENTFLOW_BOOTSTRAP_ADMIN_PROMOTE=true to promote it",
                username,
            )
            return
        log.info("bootstrap admin %s is ready", user.username)
