"""An example job bundle: free school meals by SEN status (the demo's and ``ndl job init``'s).

One place for it, so the demo runs the very bundle a new user starts from.
"""

from __future__ import annotations

from pathlib import Path

from ndl.core.errors import Conflict
from ndl.jobs.bundle import MANIFEST

DATASET = "dfe/pupils"


def files(dataset: str = DATASET) -> dict[str, str]:
    """The bundle's files, path → text."""
    manifest = f'''# A controlled job: run it on the mock with  ndl run . --mock
# and send it with  ndl submit . --project <project id>
name = "fsm-by-sen"
language = "python"                 # or "sql"
entry = "analysis.py"
environment = "python-data"         # ndl job environments lists what datasites offer
datasets = ["{dataset}"]
context = """Pupils by free school meal eligibility, by SEN status and by sex, to describe
the attainment gap. Counts only; small cells are suppressed and the rest rounded to 5."""

[[outputs]]
name = "fsm_by_sen"
kind = "table"                      # table | figure | model_summary | text
description = "Pupils by SEN status and FSM eligibility"

[[outputs]]
name = "fsm_by_sex"
kind = "table"
description = "Pupils by sex (as recorded, missing included) and FSM eligibility"
'''
    analysis = f'''"""Free school meals by SEN status: a controlled job to start from.

Try it on mock data first (nothing real leaves the datasite, and this runs the same checks):
    ndl run . --mock                                   # the hub's mock of {dataset}
    ndl run . --mock --data {dataset}=pupils.parquet   # or your own mock rows (Parquet/CSV)
then submit it for review:  ndl submit . --project p-...
"""

from ndl import job

pupils = job.dataset("{dataset}", as_="pandas")

# Tables through the helper: the datasite recomputes each from these rows, suppresses any
# cell under the threshold (and cells that would reveal it), then rounds the rest.
job.table("fsm_by_sen", pupils, by=["sen_status", "fsm_eligible"])
job.table("fsm_by_sex", pupils, by=["sex", "fsm_eligible"])
'''
    return {MANIFEST: manifest, "analysis.py": analysis}


def write(folder: Path, dataset: str = DATASET) -> list[Path]:
    """Write the example into ``folder`` (created); refuses to overwrite a bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    made = files(dataset)
    clash = [p for p in made if (folder / p).exists()]
    if clash:
        raise Conflict(f"{folder} already holds {', '.join(clash)}: choose an empty folder")
    paths = []
    for rel, text in made.items():
        (folder / rel).write_text(text, encoding="utf-8")
        paths.append(folder / rel)
    return paths
