"""Property-based fuzzing of the running service from its own /openapi.json: every operation,
at least 100 generated cases each, bounded in time; no 5xx and no response that breaks the schema.
Run it alone with: .venv/bin/python -m pytest -m schemathesis"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.schemathesis]

MAX_EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "100"))
TIME_LIMIT_S = 1500


@pytest.mark.timeout(TIME_LIMIT_S + 60)
def test_fuzz_every_endpoint(switchboard, tmp_path):
    cli = Path(sys.executable).parent / "schemathesis"
    cmd = [str(cli), "run", f"{switchboard}/openapi.json",
           "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
           "--max-examples", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing",
           "--request-timeout", "90", "--seed", "1",
           "--continue-on-failure",
           # Admin endpoints are fuzzed without the token (401s): faults must not change the service
           # under the other tests' feet.
           "--report", "junit", "--report-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIME_LIMIT_S,
                          env={**os.environ, "NO_COLOR": "1"})
    (Path(os.environ.get("SWITCHBOARD_FUZZ_LOG", tmp_path / "schemathesis.log"))).write_text(done.stdout + done.stderr)
    tail = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
