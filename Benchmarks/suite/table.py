"""The suite's result table, shared by driver.py and cluster.py: rows of
mcastfs beside an anchor, the figures as medians over rounds and the ratio as
the median of the per-round ratios (the machines are shared and noisy: a
ratio within one round is what holds), printed as one table and kept as
`ROWS` for the results JSON."""

ROWS = []


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def row(scenario, metric, value, anchor, anchor_value, better="higher", goal=None, ratio=None):
    """`goal`: (kind, limit, *note), kind "ratio >=", "ratio <=", "value >="
    or "value <="; not judged ("not run") without the figure it names."""
    if ratio is None:
        ratio = value / anchor_value if anchor_value and value is not None else None
    met = None
    if goal is not None:
        kind, limit, *note = goal
        x = ratio if kind.startswith("ratio") else value
        if x is not None:
            met = x >= limit if kind.endswith(">=") else x <= limit
    ROWS.append({"scenario": scenario, "metric": metric, "better": better, "mcastfs": value,
                 "anchor": anchor, "anchor_value": anchor_value, "ratio": ratio,
                 "goal": None if goal is None else " ".join([goal[0], f"{goal[1]:g}", *goal[2:]]),
                 "goal_met": met})


def compare(scenario, metric, field, m_runs, a_runs, anchor, better="higher", goal=None):
    """One row from two lists of runs, paired by round. Without mcastfs
    runs, the anchor's figure alone."""
    a = median([r[field] for r in a_runs])
    if not m_runs:
        row(scenario, metric, None, anchor, a, better, goal)
        return
    ratio = median([m[field] / x[field] for m, x in zip(m_runs, a_runs) if x[field]])
    row(scenario, metric, median([r[field] for r in m_runs]), anchor, a, better, goal, ratio)


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def print_table(note=None):
    head = ["scenario", "metric", "mcastfs", "anchor", "anchor value", "ratio", "goal"]
    lines = []
    for r in ROWS:
        goal = ""
        if r["goal"]:
            goal = f"{r['goal']} " + ("not run" if r["goal_met"] is None else "ok" if r["goal_met"] else "NOT MET")
        lines.append([r["scenario"], f"{r['metric']} ({'↑' if r['better'] == 'higher' else '↓'})", fmt(r["mcastfs"]),
                      r["anchor"], fmt(r["anchor_value"]), "—" if r["ratio"] is None else f"{r['ratio']:.2f}", goal])
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    right = {2, 4, 5}

    def out(cells):
        return " | ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells))

    print()
    print(out(head))
    print("-+-".join("-" * w for w in widths))
    for x in lines:
        print(out(x))
    if note:
        print(f"({note})")
    print()
