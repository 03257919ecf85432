"""External steps used by the compute tests (run through the real entry point, by dotted path)."""

from data_platform.compute import register_step


def report(params: dict, pipes) -> None:
    """Report the rows it was given as metadata and a check on them."""
    rows = int(params["rows"])
    pipes.log.info(f"step saw {rows} rows")
    pipes.report_asset_materialization(metadata={"rows": rows, "source": params.get("source", "")})
    pipes.report_asset_check(
        check_name="rows_positive", passed=rows > 0, metadata={"rows": rows}
    )


def explode(params: dict, pipes) -> None:
    """Fail the way a step with bad input does."""
    pipes.log.info("about to fail")
    raise ValueError(f"cannot decode {params.get('key', '?')}: not an image")


def aborts_at_exit(params: dict, pipes) -> None:
    """Finish, leaving a teardown that aborts the process at interpreter exit, as a native
    thread pool (Arrow's, DuckDB's) torn down then does now and then. Subprocess only: in
    process it would abort the test run itself."""
    import atexit
    import os

    atexit.register(os.abort)
    pipes.report_asset_materialization(metadata={"done": True})


@register_step("tests.registered")
def registered(params: dict, pipes) -> None:
    """A step reached through the name it registered when its module was imported."""
    pipes.report_asset_materialization(metadata={"registered": True})
