"""The distributed ingestion job: ``albatross ingest --engine ray`` on the Ray cluster it runs in.

A KubeRay RayJob (deploy/k8s/ingest-rayjob.yaml) runs this with ``RAY_ADDRESS`` set, so the job
joins that cluster; elsewhere it starts a local Ray. The store comes from ``ALBATROSS_DB`` (or
``--db``); every other flag is ``albatross ingest``'s::

    python deploy/ray/ingest_job.py /data/input/corpus.jsonl --collection docs --workers 4

Run it again after a failure: documents already committed are recognised by their content hash
and skipped, so the job resumes where it stopped, without duplicates.
"""

from __future__ import annotations

import sys

from albatross.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", "--engine", "ray", *sys.argv[1:]]))
