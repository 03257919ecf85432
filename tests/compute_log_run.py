"""A run on the local instance, in a process of its own with real stdout and stderr (the test
reads them as the terminal): `python compute_log_run.py DAGSTER_HOME RESULT_JSON [closed]`.

The op writes through Python and straight to the file descriptors, logs through Dagster, and
writes its last line just before it returns. `closed`: stdout's reader is gone before the run
(a terminal closed under it). The result file says what Dagster captured and how many processes
the run started."""

import json
import os
import subprocess
import sys

import dagster as dg

from data_platform.instance import write_instance_yaml

started = []
_popen_init = subprocess.Popen.__init__


def _counting_init(self, *args, **kwargs):
    started.append(args[0] if args else kwargs.get("args"))
    _popen_init(self, *args, **kwargs)


@dg.op
def talk(context):
    print("printed by the op", flush=True)
    os.write(1, b"written to fd 1\n")
    os.write(2, b"written to fd 2\n")
    context.log.info("logged by the op")
    sys.stdout.write("the op's last line\n")
    sys.stdout.flush()


@dg.job
def talker():
    talk()


def main() -> None:
    home, result_path = sys.argv[1], sys.argv[2]
    if sys.argv[3:] == ["closed"]:
        r, w = os.pipe()
        os.close(r)
        os.dup2(w, 1)
        os.close(w)
    write_instance_yaml(home)
    with dg.DagsterInstance.from_config(home) as instance:
        subprocess.Popen.__init__ = _counting_init
        try:
            result = talker.execute_in_process(instance=instance)
        finally:
            subprocess.Popen.__init__ = _popen_init
        manager = instance.compute_log_manager
        file_key = next(e.event_specific_data.file_key for e in result.all_events
                        if e.event_type_value == "LOGS_CAPTURED")
        log_key = manager.build_log_key_for_run(result.run_id, file_key)
        data = manager.get_log_data(log_key)
        with open(result_path, "w") as f:
            json.dump({"success": result.success, "manager": type(manager).__name__,
                       "complete": manager.is_capture_complete(log_key),
                       "stdout": (data.stdout or b"").decode(),
                       "stderr": (data.stderr or b"").decode(),
                       "processes_started": [str(a) for a in started]}, f)


if __name__ == "__main__":
    main()
