"""SGLANG_EXTERNAL_MODEL_PACKAGE for the emulated server: registering the one architecture the
shipped tiny config names spares SGLang importing its ~200 model modules at start-up (the
emulated worker never builds the model)."""
