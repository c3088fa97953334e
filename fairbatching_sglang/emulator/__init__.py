"""The emulated device: the real SGLang server (HTTP, tokenizer manager, scheduler, detokenizer)
on CPU with only the model worker replaced. See DESIGN.md section 6 and README "Emulated server".

Loaded by SGLang in every process through the `sglang.srt.plugins` entry point
(`fairbatching_sglang.emulator:register`); inert unless FAIRBATCHING_EMULATED_DEVICE is set
(settings.py), so installing this package never changes a real server.
"""

from __future__ import annotations


def register() -> None:
    """Entry point: register the emulator's hooks when emulation is requested."""
    from fairbatching_sglang.emulator.settings import emulation_requested

    if not emulation_requested():
        return
    from fairbatching_sglang.emulator.plugin import install_hooks

    install_hooks()
