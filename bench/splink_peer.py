#!/usr/bin/env python3
"""The peer for Doorstep's duplicate queue: Splink (Fellegi-Sunter on DuckDB) on the same labelled
commune, configured as a competent user would. Prints precision and recall at 0.5 and at Splink's
best threshold, with the same truth (closed: two copies of one resident are one person too) and the
same rule as the server (a household is never compared with itself). Given Doorstep's precision and
recall on the same set, also prints Splink at those operating points: its best recall at any
threshold where its precision is at least Doorstep's, and its best precision at any threshold where
its recall is at least Doorstep's (every threshold Splink's scores allow, chosen with the labels).

Usage: splink_peer.py households.jsonl truth.tsv [doorstep_precision doorstep_recall]
(run by sync-server/benches/linkage.rs in a venv)
"""
import json, sys, time, unicodedata, logging

import pyarrow as pa
import splink
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def fold(s):
    s = unicodedata.normalize("NFD", s or "")
    s = "".join(c for c in s if not unicodedata.combining(c)).replace("đ", "d").replace("Đ", "D")
    return " ".join(s.lower().split())


def rows(path):
    out = []
    for line in open(path, encoding="utf-8"):
        h = json.loads(line)
        for m in h["members"]:
            t = fold(m["full_name"]).split()
            out.append({
                "unique_id": f"{h['household_id']}/{m['member_id']}",
                "household_id": h["household_id"],
                "family": t[0] if len(t) >= 2 else None,
                "middle": " ".join(t[1:-1]) or None,
                "given": t[-1] if t else None,
                "full_name": " ".join(t) or None,
                "dob": m.get("dob"),
                "birth_year": (m.get("dob") or "")[:4] or None,
                "sex": m.get("sex"),
                "cccd": m.get("cccd"),
                "phone": m.get("phone"),
            })
    return out


def truth_pairs(path):
    parent = {}

    def root(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for line in open(path):
        a, b = line.rstrip("\n").split("\t")[:2]
        parent[root(a)] = root(b)
    groups = {}
    for x in list(parent):
        groups.setdefault(root(x), []).append(x)
    pairs = set()
    for g in groups.values():
        for i, a in enumerate(g):
            for b in g[i + 1:]:
                pairs.add(tuple(sorted((a, b))))
    return pairs


def main():
    logging.disable(logging.WARNING)
    start = time.time()
    data = rows(sys.argv[1])
    truth = truth_pairs(sys.argv[2])
    db_api = DuckDBAPI()
    df = db_api.register(pa.Table.from_pylist(data))
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("family").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("middle", [0.9]),
            cl.NameComparison("given").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.ExactMatch("cccd"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("cccd"),
            block_on("dob"),
            block_on("given", "birth_year"),
            block_on("family", "given"),
            block_on("phone"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(df, settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("cccd"), block_on("full_name", "dob")], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("family", "given"))
    predictions = linker.inference.predict(threshold_match_probability=0.01).as_record_list()
    scored = []
    for p in predictions:
        a, b = p["unique_id_l"], p["unique_id_r"]
        if a.split("/")[0] == b.split("/")[0]:
            continue
        scored.append((p["match_probability"], tuple(sorted((a, b)))))
    elapsed = time.time() - start

    def at(threshold):
        found = {pair for prob, pair in scored if prob >= threshold}
        tp = len(found & truth)
        precision = tp / max(1, len(found))
        recall = tp / max(1, len(truth))
        f1 = 2 * precision * recall / max(1e-9, precision + recall)
        return precision, recall, f1, len(found)

    p, r, f1, n = at(0.5)
    print(f"SPLINK {splink.__version__} (DuckDB) at 0.5: PRECISION {p:.3f}, RECALL {r:.3f}, F1 {f1:.3f}, {n} queued; {elapsed:.0f} s")
    best = max((at(t / 100) + (t / 100,) for t in range(1, 100)), key=lambda x: x[2])
    print(f"SPLINK best threshold {best[4]:.2f}: PRECISION {best[0]:.3f}, RECALL {best[1]:.3f}, F1 {best[2]:.3f}, {best[3]} queued")
    if len(sys.argv) >= 5:
        precision, recall = float(sys.argv[3]), float(sys.argv[4])
        points = [at(t) for t in sorted({prob for prob, _ in scored})]
        at_precision = [r for p, r, _, _ in points if p >= precision]
        at_recall = [p for p, r, _, _ in points if r >= recall]
        print(
            f"SPLINK at Doorstep's precision ({precision:.3f} or more): best RECALL "
            + (f"{max(at_precision):.3f}" if at_precision else "none (no threshold is that precise)")
            + f" (Doorstep {recall:.3f}); at Doorstep's recall ({recall:.3f} or more): best PRECISION "
            + (f"{max(at_recall):.3f}" if at_recall else f"none (its recall is at most {max(r for _, r, _, _ in points):.3f} at 0.01)")
            + f" (Doorstep {precision:.3f})"
        )


if __name__ == "__main__":
    main()
