"""Side-by-side figures for the candidate loops from their results files."""

from .expectations import NOT_PASSING

LABELS = ("ferroloop", "uvloop", "asyncio")

ROWS = (
    ("tests run", lambda t: True),
    ("skipped", lambda t: t["outcome"] == "skipped"),
    ("created the candidate loop", lambda t: bool(t.get("created"))),
    ("exercised it (the loop ran)", lambda t: bool(t.get("ran"))),
    ("exercised it: passed", lambda t: t.get("ran") and t["outcome"] == "passed"),
    ("exercised it: failed", lambda t: t.get("ran") and t["outcome"] in ("failed", "crashed")),
    ("exercised it: hung", lambda t: t.get("ran") and t["outcome"] == "hung"),
    (
        "created it, failed before it ran",
        lambda t: t.get("created") and not t.get("ran") and t["outcome"] in NOT_PASSING,
    ),
    (
        "failed without it (stock loops)",
        lambda t: not t.get("created") and not t.get("ran") and t["outcome"] in NOT_PASSING,
    ),
)


def table(results_by_label, markdown=False):
    labels = [lb for lb in LABELS if lb in results_by_label] + sorted(set(results_by_label) - set(LABELS))
    rows = []
    for name, pred in ROWS:
        rows.append(
            [name] + [str(sum(1 for t in results_by_label[lb]["tests"].values() if pred(t))) for lb in labels]
        )
    # The fair comparison: the tests every loop exercised, and how many each passed.
    common = None
    for lb in labels:
        ran = {k for k, t in results_by_label[lb]["tests"].items() if t.get("ran")}
        common = ran if common is None else common & ran
    common = common or set()
    rows.append(
        [f"passed, of the {len(common)} all exercised"]
        + [
            str(sum(1 for k in common if results_by_label[lb]["tests"][k]["outcome"] == "passed"))
            for lb in labels
        ]
    )
    rows.append(
        ["wall time of the run (s)"] + [str(results_by_label[lb].get("duration", "?")) for lb in labels]
    )
    header = [""] + labels
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(labels)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]

    def fmt(r):
        return "  ".join(
            [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        )

    return "\n".join([fmt(header)] + [fmt(r) for r in rows])


def describe(results_by_label):
    lines = []
    for label, res in results_by_label.items():
        loop_types = sorted({m.get("loop_type", "?") for m in res["modules"].values()})
        lines.append(
            f"{label}: --loop {res['loop']}, Python {res['python']}, subset {res['subset']}, "
            f"{len(res['modules'])} modules, started {res['started']}, loop type {', '.join(loop_types)}"
        )
    return "\n".join(lines)
