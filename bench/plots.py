"""The PNG plots of one benchmark run (matplotlib, headless): added latency, capacity, memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_plots(out: Path, r: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    s = r["scenarios"]
    ov = s.get("overhead")
    if ov and ov["rows"]:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
        for ax, q in zip(axes, ("p50", "p99")):
            labels, width = [str(x["sessions"]) for x in ov["rows"]], 0.2
            series = [("livegate c2s", lambda x: x["added"]["c2s"][q]), ("livegate s2c", lambda x: x["added"]["s2c"][q]),
                      ("floor c2s", lambda x: x["floor_added"]["c2s"][q]),
                      ("floor s2c", lambda x: x["floor_added"]["s2c"][q])]
            for i, (name, fn) in enumerate(series):
                ax.bar([j + (i - 1.5) * width for j in range(len(labels))],
                       [max(0.01, fn(x) or 0.0) for x in ov["rows"]], width, label=name)
            ax.set_yscale("log")  # 1 session is ~1 ms, 200 sessions can be hundreds
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlabel("concurrent sessions")
            ax.set_ylabel(f"added latency {q} (ms)")
            ax.set_title(f"added one-way latency, {q}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "overhead.png", dpi=100)
        plt.close(fig)
        made.append("overhead.png")
    cap = s.get("capacity")
    if cap:
        fig, ax = plt.subplots(figsize=(7, 4))
        for kind, label in (("floor", "floor chain"), ("floor_paced", "floor chain, paced echo"),
                            ("gateway_echo", "livegate 1+1, the floor's echo"),
                            ("gateway", "livegate 1+1, emulator conversation")):
            if not cap.get(kind):
                continue
            pts = sorted((st["sessions"], max(st["c2s"]["p99"] or 0, st["s2c"]["p99"] or 0)) for st in cap[kind]["steps"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
        so = s.get("scaleout")
        if so:
            pts = sorted((st["sessions"], max(st["c2s"]["p99"] or 0, st["s2c"]["p99"] or 0))
                         for st in so["two_search"]["steps"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", label="livegate 2+2")
        ax.axhline(cap["p99_limit_ms"], color="red", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent 50 fps audio sessions")
        ax.set_ylabel("worst-direction p99 one-way latency (ms)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "capacity.png", dpi=100)
        plt.close(fig)
        made.append("capacity.png")
    mem = s.get("memory")
    if mem and mem["rows"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [x["sessions"] for x in mem["rows"]]
        for k in ("front", "worker"):
            ax.plot(xs, [x["rss_mib"][k] for x in mem["rows"]], "o-", label=f"{k} RSS")
        ax.set_xlabel("live sessions")
        ax.set_ylabel("RSS (MiB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "memory.png", dpi=100)
        plt.close(fig)
        made.append("memory.png")
    return made
