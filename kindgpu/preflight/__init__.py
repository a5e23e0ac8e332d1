"""Host preflight: can this host run the cluster asked for, and how to fix what is missing.

    main(workers=, gpus=, cluster_name=, simulate=, as_json=, fix=, out=) -> exit code
    run_checks(Request(...)) -> list[Check]      # for `invoke up`: stop on any FAIL
    Request.from_spec(spec), request_fields(spec) # what a resolved spec asks of the host
    preflight(Request(...)) -> Report            # checks + inventory + overall result
"""

from .cli import main
from .model import Check, Report, Request, Status, overall, request_fields
from .run import preflight, run_checks

__all__ = ["Check", "Report", "Request", "Status", "main", "overall", "preflight", "request_fields", "run_checks"]
