"""Profiles from behaviour models: AppArmor and Seccomp renderers, and their real checks.

The pipeline, the sink and the CLI call :func:`render_apparmor` and :func:`render_seccomp`;
tests of any component compile AppArmor text with :func:`compile_check` and run commands
under a Seccomp profile with :func:`apply_seccomp_and_exec`.
"""

from armorflow.render.apparmor import (
    ProfileNameError,
    RenderedAppArmor,
    RenderOptions,
    check_profile_name,
    render_apparmor,
)
from armorflow.render.apparmor_check import AppArmorCompileError, compile_binary, compile_check
from armorflow.render.drops import Drops
from armorflow.render.runtime_syscalls import RUNTIME_SYSCALLS
from armorflow.render.seccomp import render_seccomp, seccomp_json
from armorflow.render.seccomp_apply import (
    apply_seccomp_and_exec,
    build_filter,
    load_profile,
    wrapper_command,
)

__all__ = [
    "RUNTIME_SYSCALLS",
    "AppArmorCompileError",
    "Drops",
    "ProfileNameError",
    "RenderOptions",
    "RenderedAppArmor",
    "apply_seccomp_and_exec",
    "build_filter",
    "check_profile_name",
    "compile_binary",
    "compile_check",
    "load_profile",
    "render_apparmor",
    "render_seccomp",
    "seccomp_json",
    "wrapper_command",
]
