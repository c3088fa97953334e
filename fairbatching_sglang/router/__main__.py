"""`python -m fairbatching_sglang.router serve ...` (same as `fairbatching router serve ...`)."""

from fairbatching_sglang.router.cli import router_app

router_app(prog_name="fairbatching-router")
