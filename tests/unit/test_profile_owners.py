"""`python -m benchmarks.profile owners`: py-spy samples by the project function they were
spent in."""

from __future__ import annotations

from pathlib import Path

from benchmarks.profile import owners

ROUTE = "app (fastapi/routing.py:10);create_cluster (src/clusterplane/api/routers/clusters.py:170)"
DO_EXECUTE = "do_execute (sqlalchemy/engine/default.py:9)"
CLAIM = f"{ROUTE};claim_workers (src/clusterplane/services/capacity/claims.py:300)"


def test_samples_go_to_the_innermost_project_frame_split_by_the_library_at_the_top(
    tmp_path: Path,
):
    raw = tmp_path / "create.raw"
    raw.write_text(
        f"{CLAIM};execute (sqlalchemy/engine/base.py:1450) 6\n"
        f"{CLAIM};_choose (src/clusterplane/domain/placement.py:40) 2\n"
        f"{ROUTE};sign (cryptography/x509/base.py:90) 1\n"
        f"{CLAIM};execute (sqlalchemy/engine/base.py:1450);{DO_EXECUTE} 1\n"
    )
    assert owners(raw, 10) == [
        ("claim_workers (services/capacity/claims.py)", "sqlalchemy", 0.7),
        ("_choose (domain/placement.py)", "", 0.2),
        ("create_cluster (api/routers/clusters.py)", "cryptography", 0.1),
    ]
