"""Which model to ship: best dev macro F1, fastest, smallest, and fastest above an F1 floor.

Selection is always on dev macro F1 and never on a degenerate model (see `recommend`).
"""

from __future__ import annotations

import math
from typing import Any

from hate_compress.report.format import fmt
from hate_compress.report.rows import has_number


def _describe(row: dict) -> str:
    bits = [f"dev macro F1 {fmt(row.get('dev_macro_f1'))}"]
    if row.get("split") not in (None, "dev"):
        bits.append(f"{row['split']} macro F1 {fmt(row.get('macro_f1'))}")
    if row.get("speedup_b1") is not None and row["kind"] == "cell":
        bits.append(f"{row['speedup_b1']:.2f}x faster than its teacher (b1)")
    if row.get("latency_ms_b1") is not None:
        bits.append(f"{row['latency_ms_b1']:.2f} ms at b1")
    if row.get("size_mb") is not None:
        bits.append(f"{row['size_mb']:.1f} MB")
    return f"**{row['label']}** (cell {row['cell']}): " + ", ".join(bits)


def candidate(row: dict) -> bool:
    """A finished, non-degenerate model with a dev macro F1: what may be recommended."""
    return has_number(row, "dev_macro_f1") and not row.get("degenerate")


def recommend(rows: list[dict], f1_floor: float | None = None) -> list[dict[str, Any]]:
    """Best F1, fastest, smallest, and the fastest model that keeps macro F1 >= `f1_floor`.

    Selection is on **dev** macro F1 whatever split the table shows: choosing on test would make
    the test number an optimistic, selected score. Degenerate models (one class for almost
    everything, see `measure.quality.DEGENERATE_SHARE`) are never candidates. Candidates are the cells'
    finished models; teachers are candidates only when no cell produced a compressed model (a
    teacher-only sweep), since the question a matrix answers is which *compressed* model to
    ship. Ties go to the higher dev F1, then the earlier cell.
    """
    cells = [r for r in rows if r["kind"] == "cell" and candidate(r)]
    compressed = [r for r in cells if r.get("stage") != "teacher"]
    pool = compressed or cells or [r for r in rows if r["kind"] == "teacher" and candidate(r)]
    order = {id(r): i for i, r in enumerate(rows)}

    def best(candidates: list[dict], key) -> dict | None:
        return min(candidates, key=lambda r: (key(r), -r["dev_macro_f1"], order[id(r)]),
                   default=None)

    timed = [r for r in pool if has_number(r, "latency_ms_b1")]
    sized = [r for r in pool if has_number(r, "size_mb")]
    out = [
        {"rule": "best_f1", "title": "Best dev macro F1",
         "row": best(pool, lambda r: (-r["dev_macro_f1"], r.get("latency_ms_b1") or math.inf)),
         "missing": "no finished model"},
        {"rule": "fastest", "title": "Fastest (latency b1)",
         "row": best(timed, lambda r: r["latency_ms_b1"]),
         "missing": "no latency measured (measure.latency=false)"},
        {"rule": "smallest", "title": "Smallest (size MB)",
         "row": best(sized, lambda r: r["size_mb"]), "missing": "no size recorded"},
    ]
    floor = {"rule": "floor", "title": "Fastest with dev macro F1 >= floor", "floor": f1_floor}
    if f1_floor is None:
        floor.update(row=None, missing="no F1 floor given (--f1-floor)")
    else:
        floor["title"] = f"Fastest with dev macro F1 >= {f1_floor:g}"
        meets = [r for r in pool if r["dev_macro_f1"] >= f1_floor]
        # rank by latency; models without a latency number go last, smallest first among them
        floor["row"] = best(meets, lambda r: (r.get("latency_ms_b1") if has_number(r, "latency_ms_b1")
                                              else math.inf, r.get("size_mb") or math.inf))
        top = max((r["dev_macro_f1"] for r in pool), default=None)
        floor["missing"] = (f"none meets the floor (best dev macro F1 is {fmt(top)})"
                            if top is not None
                            else "none meets the floor (no finished model)")
    out.append(floor)
    for rec in out:
        if not pool:
            rec["missing"] = "no finished model"
        rec["text"] = _describe(rec["row"]) if rec["row"] is not None else rec["missing"]
    return out
