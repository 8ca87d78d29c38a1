"""`python -m synthloop.llm.server ARGS`: llama-cpp-python's OpenAI-compatible server (same arguments as
`python -m llama_cpp.server`), loading models with the embedded backend's safe parameters, so it runs
on the same CPUs as the embedded backend (see `synthloop.llm.embedded.safe_llama_params`)."""
from __future__ import annotations

import runpy

from synthloop.llm.embedded import safe_llama_params

if __name__ == "__main__":
    with safe_llama_params():
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
