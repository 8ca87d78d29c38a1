"""The forkserver's preload: load the parent's main module and the tasks, and run each task once,
so that every job forks from a warm process instead of paying seconds of imports."""
import os

from synthloop.studio import tasks


def _load_main() -> None:
    main = os.environ.get("SYNTHLOOP_STUDIO_MAIN", "")
    key, _, value = main.partition("=")
    if not value:
        return
    from multiprocessing import process, spawn

    process.current_process()._inheriting = True  # as the forkserver's own "__main__" preload does
    try:
        if key == "init_main_from_path":
            spawn._fixup_main_from_path(value)
        elif key == "init_main_from_name":
            spawn._fixup_main_from_name(value)
    finally:
        del process.current_process()._inheriting


try:
    _load_main()
except Exception:  # noqa: BLE001 - only a speed-up: children then import the main module themselves
    pass
try:
    if os.environ.get("SYNTHLOOP_STUDIO_WARM", "1") != "0":
        tasks.warm()
except Exception:  # noqa: BLE001 - a warm-up only; a job that really fails reports its own error
    pass
