"""Population screening of a FHIR Bulk Data export: every child, the same pure core.

A Bulk export arrives by resource type (``Patient.ndjson``, ``Condition.ndjson``,
...), not by patient. This package groups the lines by patient with bounded memory,
hands each patient's resources to :func:`service.screening.screen_bundle` as an
in-memory collection Bundle, and writes ``RiskAssessment.ndjson``, ``flagged.csv``,
``summary.json`` and ``report.html``.

    source.py        which NDJSON files an export has (a directory or a manifest)
    lines.py         one NDJSON line -> (resource type, patient id) or why it is unusable
    problems.py      unusable lines: counted, the first ones listed, never fatal
    core_view.py     the one place that reads a ScreeningResult's fields
    patient.py       one patient's lines -> Bundle -> core -> PatientOutcome
    partition.py     grouping by patient on disk (hashed partitions)
    local_engine.py  the single-machine engine (a process pool)
    spark_engine.py  the same on Spark (optional extra ``ipex-screen[spark]``)
    outputs.py       the four output files, from outcomes sorted by patient id
    report.py        report.html with embedded plots
    progress.py      a progress bar on a terminal, periodic lines otherwise
    bulk/            fetching the export: kick-off, polling, download, SMART auth
    run.py           what ``ipex-screen population`` does
"""
