"""The emulated device: the real SGLang server (HTTP, tokenizer manager, scheduler, detokenizer)
on CPU with only the model worker replaced. See DESIGN.md section 6 and README "Emulated server".

Loaded by SGLang in every process through the `sglang.srt.plugins` entry point
(`fairbatching_sglang.emulator:register`); inert unless FAIRBATCHING_EMULATED_DEVICE is set
(settings.py), so installing this package never changes a real server.
"""

from __future__ import annotations

import sys


def register() -> None:
    """Entry point: register the emulator's hooks when emulation is requested."""
    from fairbatching_sglang.emulator.settings import emulation_requested

    if not emulation_requested():
        return
    from fairbatching_sglang.emulator.plugin import install_hooks

    try:
        install_hooks()
    except ValueError as exc:  # a bad FAIRBATCHING_EMULATED_* value (settings.py)
        # SGLang's plugin loader logs and swallows a plugin's exceptions: the server would
        # start without the emulator and die later, building a model it has no weights for,
        # with a misleading message. SystemExit is no Exception, so it stops this process (the
        # launcher loads plugins before it spawns anything).
        print(f"fairbatching emulator: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
