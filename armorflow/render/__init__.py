"""Profiles from behaviour models: the AppArmor and Seccomp renderers.

The pipeline, the sink and the CLI call :func:`render_apparmor` and :func:`render_seccomp`.
The checks that prove a rendered profile (apparmor_parser, a command run under the Seccomp
filter) are test support and live in ``tests/support/``.
"""

from armorflow.names import check_profile_name
from armorflow.render.apparmor import (
    ProfileNameError,
    RenderedAppArmor,
    RenderOptions,
    render_apparmor,
)
from armorflow.render.drops import Drops
from armorflow.render.runtime_syscalls import RUNTIME_SYSCALLS
from armorflow.render.seccomp import render_seccomp, seccomp_json

__all__ = [
    "RUNTIME_SYSCALLS",
    "Drops",
    "ProfileNameError",
    "RenderOptions",
    "RenderedAppArmor",
    "check_profile_name",
    "render_apparmor",
    "render_seccomp",
    "seccomp_json",
]
